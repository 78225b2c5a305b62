package capture

// Executions: the runs (executions) and agents of a request's tool spans
// that do not name them, from the other spans of their traces.

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Executions are what the spans of one request say of the runs
// (executions) their tool calls belong to, for the tool spans that do not
// say it themselves: a GenAI execute_tool span carries neither
// gen_ai.conversation.id nor gen_ai.agent.*, an OpenInference TOOL span
// no agent. The invoke_agent and chat spans of its trace name the
// conversation; the enclosing agent span (invoke_agent; AGENT, or
// LangGraph's root CHAIN) names the agent. The zero value knows nothing.
type Executions struct {
	// ids are the first gen_ai.conversation.id of each trace.
	ids map[pcommon.TraceID]string
	// agents are the agent spans, parents every span's parent (only when
	// there is an agent span): a tool span's ancestors are walked to the
	// nearest agent span of its convention.
	agents  map[spanRef]agentSpan
	parents map[spanRef]pcommon.SpanID
}

type spanRef struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

// agentSpan is what an agent span says of its agent.
type agentSpan struct {
	convention string
	kind       string // invoke_agent, AGENT, root CHAIN
	id, name   string
	nameFrom   string // the key name came from, or "its name"
}

// agentOf reports whether span is an agent span of a convention c
// captures, and what it names: GenAI invoke_agent (gen_ai.agent.id,
// gen_ai.agent.name); OpenInference AGENT or a root CHAIN
// (gen_ai.agent.name, agent.name, else the span's name: LangGraph names
// its root chain after the graph's runName).
func (c *Capturer) agentOf(span ptrace.Span) (agentSpan, bool) {
	attrs := span.Attributes()
	var a agentSpan
	switch kind := strAttr(attrs, "openinference.span.kind"); {
	case c.on[GenAI] && strAttr(attrs, "gen_ai.operation.name") == "invoke_agent":
		a = agentSpan{convention: GenAI, kind: "invoke_agent"}
	case c.on[OpenInference] && kind == "AGENT":
		a = agentSpan{convention: OpenInference, kind: "AGENT"}
	case c.on[OpenInference] && kind == "CHAIN" && span.ParentSpanID().IsEmpty():
		a = agentSpan{convention: OpenInference, kind: "root CHAIN"}
	default:
		return agentSpan{}, false
	}
	a.id = strAttr(attrs, entry.KeyAgentID)
	if a.name = strAttr(attrs, entry.KeyAgentName); a.name != "" {
		a.nameFrom = entry.KeyAgentName
	} else if a.convention == OpenInference {
		if a.name = strAttr(attrs, "agent.name"); a.name != "" {
			a.nameFrom = "agent.name"
		} else if a.name = span.Name(); a.name != "" {
			a.nameFrom = "its name"
		}
	}
	return a, true
}

// Executions returns, when GenAI or OpenInference capture is on, what the
// spans of td say of their runs (see Executions), else the zero value.
func (c *Capturer) Executions(td ptrace.Traces) Executions {
	var ex Executions
	if !c.Enabled() || !c.on[GenAI] && !c.on[OpenInference] {
		return ex
	}
	each := func(f func(ptrace.Span)) {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					f(spans.At(k))
				}
			}
		}
	}
	each(func(span ptrace.Span) {
		if a, ok := c.agentOf(span); ok {
			if ex.agents == nil {
				ex.agents = map[spanRef]agentSpan{}
			}
			ex.agents[spanRef{span.TraceID(), span.SpanID()}] = a
		}
		if !c.on[GenAI] {
			return
		}
		id := strAttr(span.Attributes(), "gen_ai.conversation.id")
		if id == "" {
			return
		}
		if ex.ids == nil {
			ex.ids = map[pcommon.TraceID]string{}
		}
		if _, ok := ex.ids[span.TraceID()]; !ok {
			ex.ids[span.TraceID()] = id
		}
	})
	if ex.agents != nil {
		// A second pass, only for a request with an agent span: the
		// parents of the spans of its traces.
		ex.parents = map[spanRef]pcommon.SpanID{}
		traces := map[pcommon.TraceID]bool{}
		for r := range ex.agents {
			traces[r.trace] = true
		}
		each(func(span ptrace.Span) {
			if traces[span.TraceID()] && !span.ParentSpanID().IsEmpty() {
				ex.parents[spanRef{span.TraceID(), span.SpanID()}] = span.ParentSpanID()
			}
		})
	}
	return ex
}

// agent returns the nearest agent span of convention cv that encloses
// span, among the spans of the request, walking up its parents; false
// when its ancestors in the request reach none.
func (ex Executions) agent(span ptrace.Span, cv string) (agentSpan, bool) {
	if ex.agents == nil {
		return agentSpan{}, false
	}
	tr := span.TraceID()
	p := span.ParentSpanID()
	// At most one step per span known, so that a cycle of parent ids (a
	// sender can send any) ends.
	for range len(ex.parents) + 1 {
		if p.IsEmpty() {
			break
		}
		if a, ok := ex.agents[spanRef{tr, p}]; ok && a.convention == cv {
			return a, true
		}
		next, ok := ex.parents[spanRef{tr, p}]
		if !ok {
			break
		}
		p = next
	}
	return agentSpan{}, false
}
