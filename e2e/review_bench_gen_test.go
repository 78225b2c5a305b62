package e2e

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// The trail BenchmarkReviewVsSQL reviews: a month of agent runs recorded by
// a few collector replicas, generated from a fixed seed.
//
// Agents of a small set start runs at random (a Poisson process) over
// rbParams.Days days. A run is a start, 3 to 27 steps (reads, writes with
// the record before and after, approval requests answered minutes to hours
// later, errors) and, mostly, an end: about 13 entries on average. The
// steps of the runs in flight interleave, and each entry reaches the trail
// when its span ends. A run's entries go to one replica (chain) by its
// execution id, except one run in twenty whose spans are spread over the
// replicas. The agents send over mTLS: the sender column is their client
// certificate's subject. Each replica's entries are sealed into batch
// files of FileEntries, the dt= partition the day its batch opened,
// exactly as trailtest (and the exporter) writes them, signed checkpoints
// and verifier keys included.

// rbGenVersion changes whenever the generator's output does, so that a
// cached trail of an older generator is written again.
const rbGenVersion = 5

// rbParams say which trail to generate; equal params give equal entries.
type rbParams struct {
	Version     int    `json:"version"`
	Seed        uint64 `json:"seed"`
	Entries     int    `json:"entries"`
	FileEntries int    `json:"file_entries"`
	Chains      int    `json:"chains"`
	Days        int    `json:"days"`
	Start       string `json:"start"` // the first day, YYYY-MM-DD
}

// rbShow is a run the benchmark shows.
type rbShow struct {
	Label string `json:"label"`
	ID    string `json:"id"`
	Steps int    `json:"steps"`
	Files int    `json:"files"` // batch files holding its entries
}

// rbManifest is what generating the trail produced; it is written last, so
// that a trail with a manifest is complete.
type rbManifest struct {
	Params     rbParams `json:"params"`
	Files      int      `json:"files"`
	Bytes      int64    `json:"bytes"` // the batch files' size
	TotalBytes int64    `json:"total_bytes"`
	Runs       int      `json:"runs"`
	GenSeconds float64  `json:"gen_seconds"`
	// Day is the day BenchmarkReviewVsSQL lists the runs of; DayRuns how
	// many runs have an entry that day.
	Day     string   `json:"day"`
	DayRuns int      `json:"day_runs"`
	Show    []rbShow `json:"show"`
}

// rbTrail returns the trail of p below root (root/trail), generating it
// unless root holds a complete one of the same params.
func rbTrail(p rbParams, root string, logf func(string, ...any)) (string, rbManifest, error) {
	dir := filepath.Join(root, "trail")
	manifestPath := filepath.Join(root, "manifest.json")
	var m rbManifest
	if b, err := os.ReadFile(manifestPath); err == nil && json.Unmarshal(b, &m) == nil && m.Params == p {
		if _, err := os.Stat(dir); err == nil {
			return dir, m, nil
		}
	}
	if err := os.RemoveAll(root); err != nil {
		return "", m, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", m, err
	}
	logf("generating %d entries into %s ...", p.Entries, dir)
	start := time.Now()
	m, err := rbGenerate(dir, p)
	if err != nil {
		return "", m, err
	}
	m.GenSeconds = time.Since(start).Seconds()
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m.TotalBytes += fi.Size()
		if strings.HasSuffix(path, ".parquet") {
			m.Files++
			m.Bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return "", m, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", m, err
	}
	if err := os.WriteFile(manifestPath, b, 0o644); err != nil {
		return "", m, err
	}
	return dir, m, nil
}

// rbStep is an entry waiting for its span to end.
type rbStep struct {
	e   entry.Entry
	run *rbRun
	n   int64 // generation order: ties in end time keep it
}

func (s *rbStep) end() int64 { return *s.e.EndTimeUnixNano }

type rbHeap []*rbStep

func (h rbHeap) Len() int { return len(h) }
func (h rbHeap) Less(i, j int) bool {
	if a, b := h[i].end(), h[j].end(); a != b {
		return a < b
	}
	return h[i].n < h[j].n
}
func (h rbHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *rbHeap) Push(x any)   { *h = append(*h, x.(*rbStep)) }
func (h *rbHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// rbRun is a generated run, followed while it is written.
type rbRun struct {
	id     string
	start  int64
	steps  int
	chain  int      // the replica its entries go to
	spread bool     // its entries go to any replica
	files  [][2]int // (chain, file number) of its entries, when followed
	onDay  bool     // an entry on the measured day
}

// rbGenerate writes the trail of p into dir.
func rbGenerate(dir string, p rbParams) (rbManifest, error) {
	m := rbManifest{Params: p}
	first, err := time.Parse(time.DateOnly, p.Start)
	if err != nil {
		return m, err
	}
	day := first.AddDate(0, 0, p.Days/2)
	m.Day = day.Format(time.DateOnly)
	dayLo, dayHi := day.UnixNano(), day.AddDate(0, 0, 1).UnixNano()

	// One goroutine per replica links and seals its entries.
	type chunk []entry.Entry
	feeds := make([]chan chunk, p.Chains)
	errs := make([]error, p.Chains)
	var wg sync.WaitGroup
	for k := range p.Chains {
		w, err := trailtest.New(dir, fmt.Sprintf("replica-%d", k), p.FileEntries, first)
		if err != nil {
			return m, err
		}
		feeds[k] = make(chan chunk, 4)
		wg.Go(func() {
			n := 0
			for c := range feeds[k] {
				for _, e := range c {
					if errs[k] != nil {
						continue
					}
					if n%p.FileEntries == 0 {
						// The batch opens with this entry: its day.
						w.Day = time.Unix(0, *e.EndTimeUnixNano).UTC()
					}
					n++
					errs[k] = w.Add(e)
				}
			}
			if errs[k] == nil {
				errs[k] = w.Flush()
			}
		})
	}
	const chunkSize = 512
	pending := make([]chunk, p.Chains)
	counts := make([]int, p.Chains)
	send := func(k int, e entry.Entry) {
		pending[k] = append(pending[k], e)
		if len(pending[k]) == chunkSize {
			feeds[k] <- pending[k]
			pending[k] = make(chunk, 0, chunkSize)
		}
	}

	g := newRBGen(p.Seed)
	// The arrival rate that spreads the entries over the days.
	mean := g.meanSteps()
	rate := float64(p.Entries) / mean / (float64(p.Days) * 86400) // runs per second
	at := float64(first.UnixNano())
	var h rbHeap
	generated, emitted := 0, 0
	var n int64
	var dayRuns []*rbRun
	for emitted < p.Entries {
		next := int64(math.MaxInt64)
		if generated < p.Entries {
			next = int64(at)
		}
		if len(h) == 0 || h[0].end() > next {
			// A run starts before the next span ends.
			run, steps := g.run(int64(at), p.Chains)
			at += g.r.ExpFloat64() / rate * 1e9
			if rem := p.Entries - generated; len(steps) > rem {
				steps = steps[:rem] // the trail ends with it in flight
			}
			run.steps = len(steps)
			generated += len(steps)
			m.Runs++
			for i := range steps {
				n++
				heap.Push(&h, &rbStep{e: steps[i], run: run, n: n})
			}
			continue
		}
		s := heap.Pop(&h).(*rbStep)
		k := s.run.chain
		if s.run.spread {
			k = g.r.IntN(p.Chains)
		}
		if s.e.TimeUnixNano >= dayLo && s.e.TimeUnixNano < dayHi && !s.run.onDay {
			s.run.onDay = true
			dayRuns = append(dayRuns, s.run)
		}
		if s.run.start >= dayLo-int64(48*time.Hour) && s.run.start < dayHi {
			// Runs that can have an entry that day: which files hold them.
			if f := [2]int{k, counts[k] / p.FileEntries}; !slices.Contains(s.run.files, f) {
				s.run.files = append(s.run.files, f)
			}
		}
		counts[k]++
		send(k, s.e)
		emitted++
	}
	for k := range p.Chains {
		if len(pending[k]) > 0 {
			feeds[k] <- pending[k]
		}
		close(feeds[k])
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return m, err
		}
	}
	m.DayRuns = len(dayRuns)
	m.Show = rbPickShows(dayRuns)
	return m, nil
}

// rbPickShows picks the runs to show among those of the measured day: a
// typical one (in one file), one of a replica in three files (a run
// crossing files, as one in six does), each of the median length of its
// kind, and the run spread over the most files.
func rbPickShows(runs []*rbRun) []rbShow {
	if len(runs) == 0 {
		return nil
	}
	median := func(label string, files int) []rbShow {
		var rs []*rbRun
		for _, r := range runs {
			if !r.spread && len(r.files) == files {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			return nil
		}
		slices.SortStableFunc(rs, func(a, b *rbRun) int { return a.steps - b.steps })
		r := rs[len(rs)/2]
		return []rbShow{{Label: label, ID: r.id, Steps: r.steps, Files: files}}
	}
	out := append(median("one-file", 1), median("three-files", 3)...)
	most := runs[0]
	for _, r := range runs {
		if len(r.files) > len(most.files) || len(r.files) == len(most.files) && r.steps > most.steps {
			most = r
		}
	}
	return append(out, rbShow{Label: "most-files", ID: most.id, Steps: most.steps, Files: len(most.files)})
}

// rbGen makes runs. Its values come from small sets, as a company's agents'
// do: a few agents, each working on its own systems, a few dozen people
// they act for, a handful of approvers.
type rbGen struct {
	r *rand.Rand
}

func newRBGen(seed uint64) *rbGen {
	return &rbGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type rbAgent struct {
	id, name, service, model string
	systems                  []rbSystem
	tasks                    []string // what a principal asks; %d a number
}

type rbSystem struct {
	name, host string
	resource   func(g *rbGen) string
	// fields of the records it holds, and how a value of each looks
	fields []rbField
}

type rbField struct {
	name string
	val  func(g *rbGen) any
}

var rbFirst = []string{"jane", "omar", "li", "maria", "kwame", "sofia", "arjun", "emma", "yuki", "lucas", "amara", "noah", "ines", "david", "fatima", "tom", "chen", "olga", "mateo", "priya"}
var rbLast = []string{"doe", "haddad", "wei", "garcia", "mensah", "rossi", "patel", "schmidt", "tanaka", "martin", "okafor", "levy", "silva", "novak", "khan", "berg"}

var rbPrincipals = func() []string {
	var ps []string
	for i := range 48 {
		ps = append(ps, rbFirst[i%len(rbFirst)]+"."+rbLast[(i*7)%len(rbLast)]+"@acme.example")
	}
	return ps
}()

var rbApprovers = []string{"ops-lead@acme.example", "finance-controller@acme.example", "security-oncall@acme.example",
	"hr-manager@acme.example", "sre-manager@acme.example", "data-governance@acme.example"}

var rbWords = strings.Fields(`account address amount approved balance billing bounce cancel change contact contract credit
 customer deadline delivery discount domain duplicate email escalation expired failed invoice ledger limit merge migration
 missing note order overdue owner payment pending phone plan policy priority quota record refund region renewal request
 review role schedule segment shipment status subscription support tax team ticket tier update usage vendor warehouse`)

func (g *rbGen) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.r.IntN(16)]
	}
	return string(b)
}

func (g *rbGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *rbGen) words(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = g.pick(rbWords)
	}
	return strings.Join(w, " ")
}

func (g *rbGen) uuid() string {
	h := g.hex(32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-" + string("89ab"[g.r.IntN(4)]) + h[17:20] + "-" + h[20:]
}

func (g *rbGen) person() string {
	return g.pick(rbFirst) + " " + g.pick(rbLast)
}

func (g *rbGen) date() string {
	return time.Date(2026, time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

func rbNum(lo, hi int) func(g *rbGen) any {
	return func(g *rbGen) any { return lo + g.r.IntN(hi-lo) }
}
func rbOneOf(vals ...string) func(g *rbGen) any {
	return func(g *rbGen) any { return vals[g.r.IntN(len(vals))] }
}
func rbText(lo, hi int) func(g *rbGen) any {
	return func(g *rbGen) any { return g.words(lo + g.r.IntN(hi-lo)) }
}

var rbAgents = []rbAgent{
	{id: "agt-crm-7f3a", name: "CRM Assistant", service: "crm-agent", model: "gpt-4o-2024-08-06",
		tasks: []string{"Update the contact details of account #%d after the bounce report", "Merge the duplicate contacts of account #%d", "Prepare the renewal opportunity for account #%d"},
		systems: []rbSystem{
			{name: "HubSpot CRM", host: "api.hubapi.com", resource: func(g *rbGen) string { return "contacts/" + strconv.Itoa(40000+g.r.IntN(60000)) },
				fields: []rbField{{"email", func(g *rbGen) any { return g.pick(rbFirst) + "@" + g.pick(rbLast) + ".example" }}, {"firstname", rbOneOf(rbFirst...)}, {"lastname", rbOneOf(rbLast...)},
					{"phone", func(g *rbGen) any { return fmt.Sprintf("+1-555-%04d", g.r.IntN(10000)) }}, {"lifecyclestage", rbOneOf("lead", "opportunity", "customer", "evangelist")},
					{"company", func(g *rbGen) any { return g.pick(rbLast) + " " + g.pick([]string{"Inc", "GmbH", "Ltd", "SA"}) }}, {"notes", rbText(8, 60)}, {"owner_id", rbNum(1000, 1100)}}},
			{name: "Salesforce", host: "acme.my.salesforce.com", resource: func(g *rbGen) string { return "Opportunity/006" + g.hex(12) },
				fields: []rbField{{"StageName", rbOneOf("Prospecting", "Qualification", "Negotiation", "Closed Won")}, {"Amount", rbNum(1000, 250000)},
					{"CloseDate", func(g *rbGen) any { return g.date() }}, {"Description", rbText(10, 80)}, {"Probability", rbNum(5, 100)}}},
		}},
	{id: "agt-bill-21c9", name: "Billing Reconciler", service: "billing-agent", model: "claude-sonnet-4",
		tasks: []string{"Reconcile the invoices of customer cus_%d for last month", "Refund the duplicate charge on invoice %d", "Apply the negotiated discount to subscription %d"},
		systems: []rbSystem{
			{name: "Stripe", host: "api.stripe.com", resource: func(g *rbGen) string { return "invoices/in_" + g.hex(24) },
				fields: []rbField{{"amount_due", rbNum(100, 900000)}, {"currency", rbOneOf("usd", "eur", "gbp")}, {"status", rbOneOf("draft", "open", "paid", "void")},
					{"customer", func(g *rbGen) any { return "cus_" + g.hex(14) }}, {"description", rbText(5, 30)}, {"due_date", func(g *rbGen) any { return g.date() }},
					{"lines", func(g *rbGen) any {
						var ls []map[string]any
						for range 1 + g.r.IntN(8) {
							ls = append(ls, map[string]any{"amount": g.r.IntN(50000), "description": g.words(4), "quantity": 1 + g.r.IntN(20)})
						}
						return ls
					}}}},
			{name: "NetSuite", host: "acme.suitetalk.api.netsuite.com", resource: func(g *rbGen) string { return "journalEntry/" + strconv.Itoa(700000+g.r.IntN(99999)) },
				fields: []rbField{{"memo", rbText(5, 25)}, {"debit", rbNum(0, 500000)}, {"credit", rbNum(0, 500000)}, {"account", rbOneOf("4000 Revenue", "1200 Receivables", "2100 Deferred revenue")}, {"period", func(g *rbGen) any { return g.date()[:7] }}}},
		}},
	{id: "agt-sup-93d0", name: "Support Triage", service: "support-agent", model: "gpt-4o-mini",
		tasks: []string{"Triage the new tickets of queue %d", "Answer ticket #%d from the knowledge base", "Escalate the priority tickets of customer #%d"},
		systems: []rbSystem{
			{name: "Zendesk", host: "acme.zendesk.com", resource: func(g *rbGen) string { return "tickets/" + strconv.Itoa(100000+g.r.IntN(900000)) },
				fields: []rbField{{"subject", rbText(4, 12)}, {"status", rbOneOf("new", "open", "pending", "solved")}, {"priority", rbOneOf("low", "normal", "high", "urgent")},
					{"assignee", func(g *rbGen) any { return g.person() }}, {"tags", func(g *rbGen) any { return strings.Fields(g.words(1 + g.r.IntN(5))) }}, {"comment", rbText(20, 160)}}},
			{name: "Slack", host: "slack.com", resource: func(g *rbGen) string { return "channels/C0" + strings.ToUpper(g.hex(9)) },
				fields: []rbField{{"text", rbText(10, 70)}, {"thread_ts", func(g *rbGen) any { return fmt.Sprintf("%d.%06d", 1790000000+g.r.IntN(9999999), g.r.IntN(999999)) }}}},
		}},
	{id: "agt-ops-5b12", name: "Deploy Runbook", service: "devops-agent", model: "claude-sonnet-4",
		tasks: []string{"Roll out release %d of the checkout service", "Scale the workers after alert #%d", "Roll back the deployment of build %d"},
		systems: []rbSystem{
			{name: "Kubernetes", host: "k8s.prod-eu-1.acme.internal", resource: func(g *rbGen) string {
				return "prod-eu-1/deployments/" + g.pick([]string{"checkout", "search", "payments", "catalog", "notifications", "gateway"})
			},
				fields: []rbField{{"replicas", rbNum(2, 40)}, {"image", func(g *rbGen) any { return "registry.acme.example/app:" + g.hex(12) }},
					{"resources", func(g *rbGen) any {
						return map[string]any{"limits": map[string]any{"cpu": fmt.Sprintf("%dm", 250*(1+g.r.IntN(8))), "memory": fmt.Sprintf("%dMi", 256*(1+g.r.IntN(16)))}}
					}},
					{"env", func(g *rbGen) any {
						env := map[string]any{}
						for range 2 + g.r.IntN(12) {
							env[strings.ToUpper(g.pick(rbWords)+"_"+g.pick(rbWords))] = g.hex(8)
						}
						return env
					}}, {"strategy", rbOneOf("RollingUpdate", "Recreate")}}},
			{name: "GitHub", host: "api.github.com", resource: func(g *rbGen) string { return "acme/platform/pulls/" + strconv.Itoa(1000+g.r.IntN(9000)) },
				fields: []rbField{{"title", rbText(4, 12)}, {"body", rbText(30, 200)}, {"state", rbOneOf("open", "closed")}, {"head", func(g *rbGen) any { return g.hex(40) }}}},
		}},
	{id: "agt-hr-0e77", name: "HR Onboarding", service: "hr-agent", model: "gpt-4o-2024-08-06",
		tasks: []string{"Onboard new hire #%d", "Update the manager of employee #%d after the reorg", "Offboard employee #%d"},
		systems: []rbSystem{
			{name: "Workday", host: "wd5-impl-services1.workday.com", resource: func(g *rbGen) string { return "workers/" + strconv.Itoa(10000+g.r.IntN(9000)) },
				fields: []rbField{{"legal_name", func(g *rbGen) any { return g.person() }}, {"title", rbText(2, 5)}, {"manager", func(g *rbGen) any { return g.person() }},
					{"cost_center", rbNum(100, 999)}, {"start_date", func(g *rbGen) any { return g.date() }}, {"location", rbOneOf("Berlin", "London", "New York", "Singapore", "Remote")}}},
			{name: "Okta", host: "acme.okta.com", resource: func(g *rbGen) string { return "users/00u" + g.hex(17) },
				fields: []rbField{{"login", func(g *rbGen) any { return g.pick(rbFirst) + "." + g.pick(rbLast) + "@acme.example" }}, {"groups", func(g *rbGen) any { return strings.Fields(g.words(1 + g.r.IntN(6))) }}, {"status", rbOneOf("STAGED", "ACTIVE", "SUSPENDED")}}},
		}},
	{id: "agt-data-4c58", name: "Data Steward", service: "data-agent", model: "claude-haiku-4",
		tasks: []string{"Fix the null customer ids in batch %d", "Tag the PII columns of dataset %d", "Archive the stale tables of project %d"},
		systems: []rbSystem{
			{name: "Snowflake", host: "acme.eu-central-1.snowflakecomputing.com", resource: func(g *rbGen) string {
				return "ANALYTICS.PUBLIC." + strings.ToUpper(g.pick(rbWords)+"_"+g.pick(rbWords))
			},
				fields: []rbField{{"rows_affected", rbNum(0, 2000000)}, {"query", func(g *rbGen) any {
					return fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s IS NULL AND %s < '%s'", strings.ToUpper(g.pick(rbWords)), g.pick(rbWords), g.pick(rbWords), g.pick(rbWords), g.pick(rbWords), g.date())
				}}, {"comment", rbText(5, 40)}, {"owner", rbOneOf("DATA_ENG", "ANALYTICS", "FINANCE_BI")}}},
			{name: "Google Drive", host: "www.googleapis.com", resource: func(g *rbGen) string { return "files/1" + g.hex(32) },
				fields: []rbField{{"name", rbText(2, 6)}, {"mimeType", rbOneOf("application/vnd.google-apps.spreadsheet", "application/pdf", "text/csv")}, {"shared_with", func(g *rbGen) any { return strings.Fields(g.words(1 + g.r.IntN(4))) }}}},
		}},
}

// record returns one of sys's records as JSON: some of its fields.
func (g *rbGen) record(sys *rbSystem) map[string]any {
	rec := map[string]any{"id": g.hex(10)}
	for _, f := range sys.fields {
		if g.r.IntN(5) > 0 {
			rec[f.name] = f.val(g)
		}
	}
	return rec
}

func rbJSON(v any) string {
	b, err := json.Marshal(v) // sorted keys, compact: canonical enough
	if err != nil {
		panic(err)
	}
	return string(b)
}

// meanSteps estimates the entries of a run, for the arrival rate.
func (g *rbGen) meanSteps() float64 {
	sample := newRBGen(1)
	total := 0
	for range 20000 {
		_, steps := sample.run(0, 1)
		total += len(steps)
	}
	return float64(total) / 20000
}

func (g *rbGen) dur(lo, hi time.Duration) int64 {
	return int64(lo) + g.r.Int64N(int64(hi-lo))
}

// lognormal returns a duration whose median is med, spread by sigma.
func (g *rbGen) lognormal(med time.Duration, sigma float64) int64 {
	return int64(float64(med) * math.Exp(sigma*g.r.NormFloat64()))
}

// run makes a run starting at t0 and returns its entries, in start order.
func (g *rbGen) run(t0 int64, chains int) (*rbRun, []entry.Entry) {
	s := func(v string) *string { return &v }
	a := &rbAgents[g.r.IntN(len(rbAgents))]
	run := &rbRun{id: g.uuid(), start: t0}
	run.chain = int(rbFNV(run.id) % uint32(chains))
	run.spread = g.r.IntN(20) == 0
	trace := g.hex(32)
	principal := rbPrincipals[int(float64(len(rbPrincipals))*math.Pow(g.r.Float64(), 2))] // a few people ask most
	root := g.hex(16)
	task := fmt.Sprintf(g.pick(a.tasks), 1000+g.r.IntN(90000))
	sender := "CN=" + a.service + ",O=Acme" // the agent's mTLS client certificate
	var out []entry.Entry
	t := t0
	add := func(action, parent string, d int64, fill func(e *entry.Entry)) *entry.Entry {
		end := t + d
		e := entry.Entry{
			TimeUnixNano: t, EndTimeUnixNano: &end, ExecutionID: run.id, TraceID: trace, SpanID: g.hex(16),
			AgentID: s(a.id), AgentName: s(a.name), ServiceName: s(a.service), Principal: s(principal), Sender: s(sender),
			ActionType: action, Result: "ok", StatusCode: "Unset",
		}
		if parent != "" {
			e.ParentSpanID = s(parent)
		}
		fill(&e)
		out = append(out, e)
		return &out[len(out)-1]
	}
	attrs := func(sys *rbSystem, method string, code int) string {
		m := map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": a.model,
			"server.address": sys.host, "http.request.method": method, "http.response.status_code": code,
			"gen_ai.usage.input_tokens": 200 + g.r.IntN(6000), "gen_ai.usage.output_tokens": 20 + g.r.IntN(800)}
		return rbJSON(m)
	}
	add("start", "", g.dur(2*time.Millisecond, 40*time.Millisecond), func(e *entry.Entry) {
		e.SpanID = root
		e.TargetSystem, e.TargetResource = a.service, "task"
		e.Reasoning = s(task + ". Requested by " + principal + " via the " + g.pick([]string{"web app", "Slack bot", "API", "scheduled job"}) + ".")
		e.Result = "started"
		e.Attributes = rbJSON(map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": a.model, "gen_ai.conversation.id": g.uuid()})
	})
	middle := 3 + int(25*math.Pow(g.r.Float64(), 2))
	failed := false
	for i := 0; i < middle; i++ {
		t = int64(*out[len(out)-1].EndTimeUnixNano) + g.lognormal(2500*time.Millisecond, 0.8) // the model thinks
		sys := &a.systems[g.r.IntN(len(a.systems))]
		res := sys.resource(g)
		switch p := g.r.IntN(100); {
		case p < 52: // read
			code := 200
			if g.r.IntN(40) == 0 {
				code = 404
			}
			add("read", root, g.dur(40*time.Millisecond, 900*time.Millisecond), func(e *entry.Entry) {
				e.TargetSystem, e.TargetResource = sys.name, res
				e.Result = fmt.Sprintf("%d %s", code, map[int]string{200: "OK", 404: "Not Found"}[code])
				if g.r.IntN(3) == 0 {
					e.Reasoning = s("Need the current " + g.words(2) + " of " + res + " before " + g.words(3) + ".")
				}
				e.Attributes = attrs(sys, "GET", code)
			})
		case p < 80 || p < 90 && i == middle-1: // write
			prev := g.record(sys)
			next := rbCopy(prev)
			for _, f := range sys.fields {
				if g.r.IntN(3) == 0 {
					next[f.name] = f.val(g)
				}
			}
			add("write", root, g.dur(80*time.Millisecond, 2500*time.Millisecond), func(e *entry.Entry) {
				e.TargetSystem, e.TargetResource = sys.name, res
				e.PreviousValue, e.ProposedValue = s(rbJSON(prev)), s(rbJSON(next))
				e.Reasoning = s("The " + g.words(2) + " is out of date (" + g.words(4) + "); updating " + res + " so that " + g.words(5) + ".")
				e.Result = "200 OK"
				e.StatusCode = "Ok"
				e.Attributes = attrs(sys, "PATCH", 200)
			})
		case p < 90: // an approval: asked, answered minutes to hours later
			change := rbJSON(g.record(sys))
			req := add("request_approval", root, g.dur(10*time.Millisecond, 60*time.Millisecond), func(e *entry.Entry) {
				e.TargetSystem, e.TargetResource = sys.name, res
				e.ProposedValue = s(change)
				e.Reasoning = s("This change touches " + g.words(3) + "; policy requires a human approval for " + g.words(2) + ".")
				e.Result = "pending"
				e.Attributes = rbJSON(map[string]any{"approval.channel": g.pick([]string{"slack", "email", "console"}), "approval.policy": "write-" + strings.ToLower(strings.ReplaceAll(sys.name, " ", "-"))})
			})
			reqSpan := req.SpanID
			t = *req.EndTimeUnixNano + g.lognormal(12*time.Minute, 1.3)
			approver := g.pick(rbApprovers)
			action := "approve"
			if g.r.IntN(12) == 0 {
				action = "reject"
			}
			add(action, reqSpan, g.dur(5*time.Millisecond, 30*time.Millisecond), func(e *entry.Entry) {
				e.TargetSystem, e.TargetResource = sys.name, res
				e.Approver = s(approver)
				e.Result = action + "d by " + approver
				if action == "reject" {
					e.Reasoning = s("Rejected: " + g.words(6) + ".")
				}
				e.Attributes = rbJSON(map[string]any{"approval.channel": "slack"})
			})
			i++
		default: // an error, then often a retry
			code := []int{429, 500, 502, 503, 409, 403}[g.r.IntN(6)]
			add("error", root, g.dur(20*time.Millisecond, 3*time.Second), func(e *entry.Entry) {
				e.TargetSystem, e.TargetResource = sys.name, res
				e.Result = fmt.Sprintf("error: %d from %s: %s", code, sys.host, g.words(5))
				e.StatusCode = "Error"
				e.Attributes = rbJSON(map[string]any{"error.type": strconv.Itoa(code), "http.response.status_code": code, "server.address": sys.host, "retry.count": g.r.IntN(4)})
			})
			if i == middle-1 && g.r.IntN(2) == 0 {
				failed = true
			}
		}
	}
	t = *out[len(out)-1].EndTimeUnixNano + g.lognormal(time.Second, 0.5)
	switch p := g.r.IntN(100); {
	case p < 3: // never ends: in progress or abandoned
	case p < 9 || failed:
		add("end", "", g.dur(time.Millisecond, 10*time.Millisecond), func(e *entry.Entry) {
			e.ParentSpanID = s(root)
			e.TargetSystem, e.TargetResource = a.service, "task"
			e.Result = "error: gave up after " + strconv.Itoa(1+g.r.IntN(5)) + " failed attempts"
			e.StatusCode = "Error"
			e.Attributes = rbJSON(map[string]any{"gen_ai.operation.name": "invoke_agent", "error.type": "agent_failed"})
		})
	default:
		add("end", "", g.dur(time.Millisecond, 10*time.Millisecond), func(e *entry.Entry) {
			e.ParentSpanID = s(root)
			e.TargetSystem, e.TargetResource = a.service, "task"
			e.Result = "completed: " + g.words(6)
			e.StatusCode = "Ok"
			e.Attributes = rbJSON(map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 2000 + g.r.IntN(60000), "gen_ai.usage.output_tokens": 200 + g.r.IntN(8000)})
		})
	}
	return run, out
}

func rbCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func rbFNV(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
