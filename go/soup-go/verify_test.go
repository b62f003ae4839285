package main

import (
	"errors"
	"strings"
	"testing"
)

func TestAlertNamesMatchPython(t *testing.T) {
	cases := map[string]string{
		"remote error: tls: certificate required":          "alert certificate required",
		"remote error: tls: unknown certificate authority": "alert unknown ca",
		"remote error: tls: bad certificate":               "alert bad certificate",
	}
	for in, want := range cases {
		if got := alertName(errors.New(in)); got != want {
			t.Errorf("alertName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJudgeMutualTLS(t *testing.T) {
	refused := []Probe{
		{"no_client_cert", true, "refused: alert certificate required"},
		{"foreign_client_cert", true, "refused: alert unknown ca"},
		{"foreign_trust", true, "refused by the host's verifier: x509: certificate signed by unknown authority"},
	}
	m := judgeMutualTLS("auto", refused)
	if !*m.PluginVerifiedClient || !*m.HostVerifiedPlugin {
		t.Fatalf("both refused but %+v", m)
	}
	lax := append([]Probe{{"no_client_cert", false, "served: the plugin answered HTTP/2 (9 bytes)"}}, refused[1:]...)
	m = judgeMutualTLS("auto", lax)
	if *m.PluginVerifiedClient || !strings.HasPrefix(m.PluginEvidence, "no_client_cert: served") {
		t.Fatalf("a plugin serving without a client cert counted as verifying: %+v", m)
	}
	if m := judgeMutualTLS("auto", nil); *m.PluginVerifiedClient || *m.HostVerifiedPlugin {
		t.Fatalf("no probes counted as evidence: %+v", m)
	}
	if m := judgeMutualTLS("disabled", nil); m.PluginVerifiedClient != nil {
		t.Fatalf("disabled: %+v", m)
	}
}

func TestKVProfiles(t *testing.T) {
	defer func() { kvProfile = "strict" }()
	if _, err := checkGet("k", []byte("v"), []byte("v\n\nWritten")); err == nil {
		t.Fatal("strict accepted appended bytes")
	}
	kvProfile = "lenient"
	detail, err := checkGet("k", []byte("v"), []byte("v\n\nWritten"))
	if err != nil || !strings.Contains(detail, "lenient: stored bytes plus 9 appended") {
		t.Fatalf("lenient get: %q %v", detail, err)
	}
	if _, err := checkGet("k", []byte("v"), []byte("other")); err == nil {
		t.Fatal("lenient accepted other bytes")
	}
	if _, err := checkMissing("k", nil); err == nil {
		t.Fatal("a value for a missing key accepted")
	}
}

// The verdict's rule, in verify.py's words (test_verify.py checks the same).
func TestMutualTLSProblems(t *testing.T) {
	refused := []Probe{
		{"no_client_cert", true, "refused: alert certificate required"},
		{"foreign_client_cert", true, "refused: alert unknown ca"},
		{"foreign_trust", true, "refused by the host's verifier: x509: certificate signed by unknown authority"},
	}
	if got := mutualTLSProblems("auto", judgeMutualTLS("auto", refused)); len(got) != 0 {
		t.Fatalf("both verified, yet %q", got)
	}
	if got := mutualTLSProblems("disabled", nil); len(got) != 0 {
		t.Fatalf("disabled, yet %q", got)
	}
	lax := append([]Probe{{"no_client_cert", false, "served: the plugin answered HTTP/2 (9 bytes)"}}, refused[1:]...)
	want := "plugin did not verify the host's certificate: no_client_cert: served: the plugin answered HTTP/2 (9 bytes); foreign_client_cert: refused: alert unknown ca"
	if got := mutualTLSProblems("manual", judgeMutualTLS("manual", lax)); len(got) != 1 || got[0] != want {
		t.Fatalf("got %q, want [%q]", got, want)
	}
	if got := mutualTLSProblems("auto", judgeMutualTLS("auto", nil)); len(got) != 2 || !strings.HasPrefix(got[1], hostDidNotVerify+": ") {
		t.Fatalf("no probes: %q", got)
	}
}

func TestUnansweredProbesUnderMultiplexingNameTheCause(t *testing.T) {
	probes := []Probe{
		{"no_client_cert", false, "no answer within 5s (not refused)"},
		{"foreign_client_cert", true, "refused: alert unknown ca"},
	}
	got := unansweredWhileMultiplexed(probes)
	if !strings.HasSuffix(got[0].Detail, "("+muxProbeCause+")") {
		t.Fatalf("an unanswered probe must name the multiplexing cause, got %q", got[0].Detail)
	}
	if got[1].Detail != "refused: alert unknown ca" {
		t.Fatalf("a refusal is evidence and stays as it is, got %q", got[1].Detail)
	}
	if probes[0].Detail != "no answer within 5s (not refused)" {
		t.Fatalf("the input must not change, got %q", probes[0].Detail)
	}
}
