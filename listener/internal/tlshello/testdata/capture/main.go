// Command capture records the first bytes a TLS client sends, as a seed of FuzzClientHello.
// It listens on 127.0.0.1, accepts one connection, reads until the client has been quiet for
// a second (a client waits for the server's answer after its hello), and writes what it read
// in the fuzz corpus format. Run it, then point a client at the address it prints:
//
//	go run ./listener/internal/tlshello/testdata/capture -out DIR/curl
//	curl -k --resolve a.test:PORT:127.0.0.1 https://a.test:PORT/
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	out := flag.String("out", "", "file to write the corpus entry to")
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	data := readUntilQuiet(c)
	entry := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(*out, []byte(entry), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %d bytes to %s", len(data), *out)
}

// readUntilQuiet reads from c until a read waits a second for nothing, or 64 KiB arrived.
func readUntilQuiet(c net.Conn) []byte {
	var data []byte
	buf := make([]byte, 4096)
	for len(data) < 64<<10 {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		data = append(data, buf[:n]...)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || err != nil {
			break
		}
	}
	return data
}
