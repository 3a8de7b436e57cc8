package bench

import (
	"encoding/json"
	"fmt"
	"os"
)

// WriteJSON saves the report at path as JSON: the data the chart command (cmd/fulcrum-chart)
// draws, so that the balancer's binary need not link a plotting library.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// ReadReport reads a report that WriteJSON saved.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: not a report saved by fulcrum bench compare: %w", path, err)
	}
	return &r, nil
}
