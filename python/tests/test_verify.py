"""soup.lab.verify's judgement and soup.lab.kvprofile's checks (pure functions)."""

from __future__ import annotations

import pytest

from soup.lab import kvprofile, verify

REFUSED = [
    verify.Probe("no_client_cert", True, "refused: alert certificate required"),
    verify.Probe("foreign_client_cert", True, "refused: alert unknown ca"),
    verify.Probe("foreign_trust", True, "refused by the host's verifier: self-signed certificate"),
]


def test_alert_names_read_like_the_alert() -> None:
    assert verify.alert_name("TLSV13_ALERT_CERTIFICATE_REQUIRED") == "alert certificate required"
    assert verify.alert_name("SSLV3_ALERT_BAD_CERTIFICATE") == "alert bad certificate"
    assert verify.alert_name("TLSV1_ALERT_UNKNOWN_CA") == "alert unknown ca"


def test_both_sides_verified_only_when_every_probe_was_refused() -> None:
    both = verify.judge("auto", REFUSED, pinned_match=True)
    assert both["plugin_verified_client"] is True
    assert both["host_verified_plugin"] is True
    served = verify.Probe("no_client_cert", False, "served: the plugin answered HTTP/2 (9 bytes)")
    lax = verify.judge("auto", [served, *REFUSED[1:]], pinned_match=True)
    assert lax["plugin_verified_client"] is False
    assert lax["plugin_evidence"].startswith("no_client_cert: served")
    assert verify.judge("auto", REFUSED, pinned_match=False)["host_verified_plugin"] is False


def test_a_refusal_by_the_plugin_is_no_evidence_for_the_host() -> None:
    # foreign_trust must be refused by our own verifier, not by the plugin closing.
    closed = verify.Probe("foreign_trust", True, "refused: alert unknown ca")
    assert verify.judge("manual", [*REFUSED[:2], closed], None)["host_verified_plugin"] is False


def test_disabled_needs_no_evidence() -> None:
    result = verify.judge("disabled", [], None)
    assert result["plugin_verified_client"] is None
    assert result["host_verified_plugin"] is None


def test_kv_profiles() -> None:
    assert "same bytes" in kvprofile.check_get("strict", "k", b"v", b"v")
    appended = kvprofile.check_get("lenient", "k", b"v", b"v\n\nWritten")
    assert "lenient: stored bytes plus 9 appended" in appended
    with pytest.raises(ValueError, match="get returned other bytes"):
        kvprofile.check_get("strict", "k", b"v", b"v\n\nWritten")
    with pytest.raises(ValueError, match="get returned other bytes"):
        kvprofile.check_get("lenient", "k", b"v", b"other")
    assert "lenient: UNKNOWN instead of NOT_FOUND" in kvprofile.check_missing(
        "lenient", "k", "UNKNOWN", "no such file"
    )
    with pytest.raises(ValueError, match="expected NOT_FOUND, got UNKNOWN"):
        kvprofile.check_missing("strict", "k", "UNKNOWN", "no such file")
    with pytest.raises(ValueError, match="got a value"):
        kvprofile.check_missing("lenient", "k", None, "3 bytes")


def test_the_verdict_needs_both_sides_verified() -> None:
    # The rule `client test` and the matrix runner share; soup-go's mutualTLSProblems
    # words it the same (verify_test.go).
    assert verify.problems("auto", verify.judge("auto", REFUSED, pinned_match=True)) == []
    assert verify.problems("disabled", None) == []
    served = verify.Probe("no_client_cert", False, "served: the plugin answered HTTP/2 (9 bytes)")
    lax = verify.judge("manual", [served, *REFUSED[1:]], pinned_match=None)
    assert verify.problems("manual", lax) == [
        "plugin did not verify the host's certificate: no_client_cert: served: the plugin "
        "answered HTTP/2 (9 bytes); foreign_client_cert: refused: alert unknown ca"
    ]
    both = verify.problems("auto", verify.judge("auto", [], pinned_match=False))
    assert [p.split(":")[0] for p in both] == [
        verify.PLUGIN_DID_NOT_VERIFY,
        verify.HOST_DID_NOT_VERIFY,
    ]
    assert verify.problems("auto", None) == [
        "no mutual_tls evidence in the result (cannot tell mutual from one-way TLS)"
    ]
