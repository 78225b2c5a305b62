package approvalpolicy

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		glob, s string
		want    bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "any/thing at all", true},
		{"?", "", false},
		{"?", "é", true}, // one character, two bytes
		{"??", "é", false},
		{"?", "ab", false},
		{"a*", "a/b/c", true},
		{"Contact *", "Contact #48291 (email field)", true},
		{"Contact *", "contact #48291", false}, // letter case counts
		{"Contact *", "Contact", false},
		{"*field)", "Contact #48291 (email field)", true},
		{"*#?????*", "Contact #48291 (email field)", true},
		{"*#??????", "Contact #48291", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZcd", false},
		{"a**", "a", true},
		{"*a", "bbba", true},
		{"*a", "bbab", false},
		{"%_", "%_", true}, // LIKE's wildcards are literals here
		{"%_", "ab", false},
		{"a?c", "a\nc", true},
		{"HubSpot CRM", "HubSpot CRM", true},
		{"Sandbox *", "Sandbox eu-1", true},
		{"*é*", "café au lait", true},
		{"caf?", "café", true},
	} {
		assert.Equal(t, c.want, Match(c.glob, c.s), "Match(%q, %q)", c.glob, c.s)
		assert.Equal(t, c.want, reference(c.glob, c.s), "reference(%q, %q)", c.glob, c.s)
	}
}

// reference is Match by regular expression: '*' is (?s:.*), '?' one
// character (regexp's '.' with s), the rest literal.
func reference(glob, s string) bool {
	var b strings.Builder
	b.WriteString(`^(?s)`)
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String()).MatchString(s)
}

// FuzzMatch checks Match against the regular expression it stands for,
// on valid UTF-8 (entries' values are repaired to it).
func FuzzMatch(f *testing.F) {
	for _, seed := range [][2]string{{"a*b?c", "aXXbYc"}, {"*", ""}, {"?é*", "xé/"}, {"**a", "ba"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, glob, s string) {
		if ValidateGlob(glob) != nil || !utf8Valid(s) || len(glob) > 64 || len(s) > 256 {
			return
		}
		if got, want := Match(glob, s), reference(glob, s); got != want {
			t.Fatalf("Match(%q, %q) = %v, want %v", glob, s, got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// A glob of stars against a text that almost matches takes time in
// proportion to their lengths' product, not exponential.
func TestMatchNotExponential(t *testing.T) {
	glob := strings.Repeat("a*", 30) + "b"
	s := strings.Repeat("a", 10000)
	assert.False(t, Match(glob, s))
}

func TestValidateGlob(t *testing.T) {
	for _, g := range []string{"", "*", "Contact #*", "a?b", "é*", "%_"} {
		assert.NoError(t, ValidateGlob(g), g)
	}
	for _, g := range []string{"[a]", "a]", `a\*`, "\xff"} {
		err := ValidateGlob(g)
		assert.ErrorIs(t, err, ErrBadGlob, g)
	}
}

var crm = []Policy{
	{Name: "crm-contact-writes", Decide: DecidePerson, Systems: []string{"HubSpot CRM"}, Resources: []string{"Contact *"}},
	{Name: "sandbox-auto", Decide: DecideAuto, Systems: []string{"Sandbox *"}},
	{Name: "deletes", Decide: DecidePerson, Tools: []string{"*_delete", "drop?"}},
}

func TestFirst(t *testing.T) {
	for _, c := range []struct {
		system, resource, tool string
		want                   string // "" for none
	}{
		{"HubSpot CRM", "Contact #48291 (email field)", "crm_update_contact", "crm-contact-writes"},
		{"HubSpot CRM", "Deal #7", "crm_update_deal", ""},
		{"HubSpot CRM", "Deal #7", "crm_delete", "deletes"},
		{"Sandbox eu", "anything", "crm_delete", "sandbox-auto"}, // the first match decides
		{"Sandbox", "", "", ""},
		{"Billing", "", "drops", "deletes"},
		{"Billing", "", "dropped", ""},
	} {
		p, ok := First(crm, c.system, c.resource, c.tool)
		assert.Equal(t, c.want != "", ok, "%+v", c)
		assert.Equal(t, c.want, p.Name, "%+v", c)
	}
	// A policy with no list matches everything.
	p, ok := First(append(crm[:1:1], Policy{Name: "rest", Decide: DecideAuto}), "x", "y", "z")
	assert.True(t, ok)
	assert.Equal(t, "rest", p.Name)
	_, ok = First(nil, "x", "y", "z")
	assert.False(t, ok)
}

func TestCanonical(t *testing.T) {
	const want = `[{"name":"crm-contact-writes","decide":"person","systems":["HubSpot CRM"],"resources":["Contact *"],"tools":[]},` +
		`{"name":"sandbox-auto","decide":"auto","systems":["Sandbox *"],"resources":[],"tools":[]},` +
		`{"name":"deletes","decide":"person","systems":[],"resources":[],"tools":["*_delete","drop?"]}]`
	assert.Equal(t, want, Canonical(crm))
	assert.Equal(t, `[]`, Canonical(nil))
	// No HTML escaping; JSON escapes where JSON needs them.
	assert.Equal(t, `[{"name":"a<b>&\"c\"","decide":"auto","systems":["x\ny"],"resources":[],"tools":[]}]`,
		Canonical([]Policy{{Name: `a<b>&"c"`, Decide: DecideAuto, Systems: []string{"x\ny"}}}))

	back, err := Parse(want)
	require.NoError(t, err)
	assert.Equal(t, want, Canonical(back))
	assert.Equal(t, crm[0], back[0])
	empty, err := Parse(`[]`)
	require.NoError(t, err)
	assert.Empty(t, empty)
}

func TestParse(t *testing.T) {
	ps, err := Parse(` [ {"decide":"auto","name":"n","systems":null} ] `)
	require.NoError(t, err)
	assert.Equal(t, []Policy{{Name: "n", Decide: DecideAuto}}, ps)

	for _, bad := range []string{
		``, `null`, `{}`, `[1]`, `[{"name":"n","decide":"auto","extra":1}]`, `[{"name":"n","decide":"sometimes"}]`,
		`[{"name":"","decide":"auto"}]`, `[{"name":"n","decide":"auto","systems":["[a]"]}]`,
		`[{"name":"n","decide":"auto","systems":"x"}]`, `[] []`, `[{"name":"n","decide":"auto"},{"name":"n","decide":"person"}]`,
	} {
		_, err := Parse(bad)
		assert.ErrorIs(t, err, ErrInvalid, bad)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	err := Policy{Decide: "x", Systems: []string{"[", "ok"}, Tools: []string{`\`}}.Validate()
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{`"name" must not be empty`, `"decide" must be`, `"systems[0]"`, `"tools[0]"`} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, `"systems[1]"`)
	assert.True(t, errors.Is(err, ErrInvalid) && errors.Is(err, ErrBadGlob))
	assert.NoError(t, ValidateAll(crm))
}
