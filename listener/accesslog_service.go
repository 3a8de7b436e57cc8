package listener

// ForService returns the access log of one service's Server: the same writer, with service
// named on rejected lines too (a rejection carries no ConnInfo to name it). A nil *AccessLog
// gives nil, which logs nothing.
func (a *AccessLog) ForService(name string) *AccessLog {
	if a == nil {
		return nil
	}
	return &AccessLog{log: a.log, service: name}
}
