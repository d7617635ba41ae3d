package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
)

// report prints the results table to w and, when outDir is set, writes it
// there as results.txt beside the raw figures in results.json.
func report(r *results, outDir string, w io.Writer) error {
	var table bytes.Buffer
	writeTable(&table, r)
	if _, err := w.Write(table.Bytes()); err != nil {
		return err
	}
	if outDir == "" {
		return nil
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "results.txt"), table.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "results.json"), append(raw, '\n'), 0o644)
}

func writeTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "%s rows of %.0f bytes (COPY text; %s MB on disk), PostgreSQL %s, %d CPUs, %s, load average %s → %s\n",
		count(r.Rows), r.RowBytes, count(r.TableBytes>>20), r.PostgresVersion, r.CPUs, r.GoVersion, r.LoadAverage[0], r.LoadAverage[1])
	if r.Repeat > 1 {
		fmt.Fprintf(w, "each figure is the run with the median rate of %d\n", r.Repeat)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tconsumer\trows/s\tvs limit\ttarget\tseconds\tCPU µs/row\tserver µs/row\twalsender µs/row\tstartup s\tpeak RSS MB\tsteady RSS MB")
	for _, m := range r.Measurements {
		ratio, target := "", ""
		switch {
		case m.Limit:
			ratio = "limit"
		case m.RatioToLimit > 0:
			ratio = fmt.Sprintf("%.2f", m.RatioToLimit)
		}
		if m.Target > 0 {
			verdict := "ok"
			if m.RatioToLimit < m.Target {
				verdict = "below"
			}
			target = fmt.Sprintf("%.2f %s", m.Target, verdict)
		}
		perRow := func(seconds float64) string {
			if seconds <= 0 {
				return ""
			}
			return fmt.Sprintf("%.2f", seconds/float64(max(m.Rows, 1))*1e6)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\n",
			m.Phase, m.Consumer, count(int64(m.RowsPerSecond)), ratio, target, m.Seconds,
			m.CPUSeconds/float64(max(m.Rows, 1))*1e6, perRow(m.ServerCPUSeconds), perRow(m.WalsenderSeconds),
			seconds(m.StartupSeconds), megabytes(m.PeakRSS), megabytes(m.SteadyRSS))
	}
	tw.Flush() //nolint:errcheck // w is an in-memory buffer (see report)
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "\nlatency of %d single-row commits, INSERT to the checkpoint on stdout: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			l.Commits, l.P50Ms, l.P99Ms, l.MaxMs)
	}
	for _, in := range r.Inserts {
		fmt.Fprintf(w, "%s: the inserts took %.2f s (%s rows/s)\n", in.Phase, in.Seconds, count(int64(float64(in.Rows)/in.Seconds)))
	}
}

func seconds(s float64) string {
	if s == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", s)
}

func megabytes(b int64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

// count formats n with thousands separators: 1234567 → "1,234,567".
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + count(-n)
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return string(b)
}
