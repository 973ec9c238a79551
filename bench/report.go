package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// figure is one contender's measurements of one metric: a value per
// round, and their median and spread.
type figure struct {
	Values []float64 `json:"values,omitempty"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Note   string    `json:"note,omitempty"` // "not installed", errors
}

func (f *figure) add(v float64) {
	f.Values = append(f.Values, v)
	s := slices.Clone(f.Values)
	slices.Sort(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
}

func (f *figure) ok() bool { return f != nil && len(f.Values) > 0 }

// row is one metric of one case of a scenario, for every contender.
type row struct {
	Scenario string             `json:"scenario"`
	Case     string             `json:"case"` // "imap c=64", "imap FETCH 64 MiB"
	Metric   string             `json:"metric"`
	Unit     string             `json:"unit"`
	Higher   bool               `json:"higher_is_better"`
	Figures  map[string]*figure `json:"figures"` // by contender
}

func (r *row) fig(contender string) *figure {
	if r.Figures == nil {
		r.Figures = map[string]*figure{}
	}
	f := r.Figures[contender]
	if f == nil {
		f = &figure{}
		r.Figures[contender] = f
	}
	return f
}

// results are the rows in the order they were made, and what the run
// was.
type results struct {
	Meta       map[string]string `json:"meta"`
	Contenders []string          `json:"contenders"`
	Rows       []*row            `json:"rows"`
	// Notes are what went wrong or looks off, in plain words.
	Notes []string `json:"notes,omitempty"`
}

// row returns the row of that scenario, case and metric, made on first use.
func (res *results) row(scenario, cas, metric, unit string, higher bool) *row {
	for _, r := range res.Rows {
		if r.Scenario == scenario && r.Case == cas && r.Metric == metric {
			return r
		}
	}
	r := &row{Scenario: scenario, Case: cas, Metric: metric, Unit: unit, Higher: higher}
	res.Rows = append(res.Rows, r)
	return r
}

func (res *results) note(format string, args ...any) {
	res.Notes = append(res.Notes, fmt.Sprintf(format, args...))
}

// readResults reads what writeJSON wrote.
func readResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	res := &results{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(res.Contenders) == 0 {
		res.Contenders = contenderNames
	}
	return res, nil
}

func (res *results) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// scenarioOrder is the numbering, in which the tables come.
var scenarioOrder = []string{"login", "bulk", "idle", "tls"}

// scenarioTitles name the tables.
var scenarioTitles = map[string]string{
	"login": "Scenario 1: login sessions",
	"bulk":  "Scenario 2: bulk relay",
	"idle":  "Scenario 3: idle capacity",
	"tls":   "Scenario 4: TLS handshakes",
}

// writeTable writes a Markdown table per scenario: the median of each
// contender with its spread ((max-min)/2 over the median), then each
// proxy's ratio to nginx and to direct.
func (res *results) writeTable(w io.Writer, contenders []string) {
	keys := make([]string, 0, len(res.Meta))
	for k := range res.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "- %s: %s\n", k, res.Meta[k])
	}
	for _, sc := range scenarioOrder {
		if !slices.ContainsFunc(res.Rows, func(r *row) bool { return r.Scenario == sc }) {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", scenarioTitles[sc])
		head := []string{"case", "metric"}
		head = append(head, contenders...)
		var ratios [][2]string
		for _, c := range contenders {
			if c == direct {
				continue
			}
			if c != nginx && slices.Contains(contenders, nginx) {
				ratios = append(ratios, [2]string{c, nginx})
			}
			if slices.Contains(contenders, direct) {
				ratios = append(ratios, [2]string{c, direct})
			}
		}
		for _, rt := range ratios {
			head = append(head, rt[0]+" ÷ "+rt[1])
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
		for _, r := range res.Rows {
			if r.Scenario != sc {
				continue
			}
			metric := r.Metric
			if r.Unit != "" {
				metric += " (" + r.Unit + ")"
			}
			cells := []string{r.Case, metric}
			for _, c := range contenders {
				cells = append(cells, r.cell(c))
			}
			for _, rt := range ratios {
				cells = append(cells, r.ratio(rt[0], rt[1]))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	if len(res.Notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n")
		for _, n := range res.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (r *row) cell(c string) string {
	f := r.Figures[c]
	switch {
	case f == nil:
		return "–"
	case !f.ok():
		return cmpOr(f.Note, "–")
	}
	s := formatNumber(f.Median)
	if len(f.Values) > 1 && f.Median != 0 {
		s += fmt.Sprintf(" ±%.0f%%", (f.Max-f.Min)/2/math.Abs(f.Median)*100)
	}
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

func (r *row) ratio(a, b string) string {
	if r.Unit == "%" {
		return "" // a load: which side was busy, not a score
	}
	fa, fb := r.Figures[a], r.Figures[b]
	if !fa.ok() || !fb.ok() || fb.Median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", fa.Median/fb.Median)
}

// formatNumber gives three significant digits, thousands spaced.
func formatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var b strings.Builder
		for i, ch := range s {
			if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
				b.WriteRune(' ')
			}
			b.WriteRune(ch)
		}
		return b.String()
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}
