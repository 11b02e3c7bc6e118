//! Helpers shared by the record's tests, and the tests of the whole record.

use std::net::IpAddr;

use super::*;
use crate::session::Outcome;

/// A quiet session end at unix second `at` from `client` (also its host).
pub(crate) fn end(at: i64, client: &str) -> SessionEnd {
    end_at(at, client, "192.0.2.254")
}

/// A quiet session end from `client`, grouped as a client reaching the proxy at `local`.
pub(crate) fn end_at(at: i64, client: &str, local: &str) -> SessionEnd {
    let peer: IpAddr = client.parse().unwrap();
    let host = Host::of_peer(peer, Some(local.parse().unwrap()));
    let mut r = Report::new();
    r.from_client = 100;
    SessionEnd::new(Time::from_unix(at), Protocol::Smtp, peer, host, &r)
}

fn report(outcome: Outcome, user: Option<&str>, messages: u64, error: Option<&str>) -> Report {
    let mut r = Report::new();
    r.outcome = outcome;
    r.user = user.map(str::to_string);
    r.messages = messages;
    r.from_client = 500;
    r.to_client = 300;
    if let Some(e) = error {
        r.note_error(e);
    }
    r
}

#[test]
fn session_ends_as_recorded() {
    // (report, recorded, counted as a failure)
    #[rustfmt::skip]
    let cases = [
        (report(Outcome::Ok, Some("printer"), 1, None), true, false),
        (report(Outcome::AuthFailed, None, 0, Some("535 5.7.8 no")), true, true),
        (report(Outcome::UpstreamError, Some("printer"), 0, Some("rejected")), true, true),
        (report(Outcome::Timeout, None, 0, None), true, true),
        (report(Outcome::ClientClosed, None, 0, None), true, false),
        (report(Outcome::Shutdown, Some("printer"), 0, None), true, false),
        // A message refused upstream in a session that ended normally: a failure.
        (report(Outcome::Ok, Some("printer"), 0, Some("550 Mailbox not found")), true, true),
        // A health probe (greeting, QUIT): not recorded at all.
        (Report::new(), false, false),
    ];
    let peer: IpAddr = "::ffff:192.168.1.50".parse().unwrap();
    let host = Host::of_peer(peer, None);
    for (r, recorded, failed) in cases {
        let a = Activity::default();
        a.session_ended(Protocol::Smtp, peer, host, &r);
        let s = a.snapshot();
        assert_eq!(s.recent.len(), usize::from(recorded), "{r:?}");
        assert_eq!(s.devices.len(), usize::from(recorded), "{r:?}");
        let Some(e) = s.recent.first() else { continue };
        assert_eq!(e.client, "192.168.1.50");
        assert_eq!(e.host, "192.168.1.50");
        assert_eq!(e.result, r.outcome);
        assert_eq!(e.failed, failed, "{r:?}");
        assert_eq!(
            (e.messages, e.bytes_in, e.bytes_out),
            (r.messages, 500, 300)
        );
        assert_eq!(e.user, r.user);
        assert_eq!(e.error, r.error);
        let hour = s.hourly.last().unwrap();
        assert_eq!(
            (hour.messages, hour.failures),
            (r.messages, u64::from(failed))
        );
    }
}

#[test]
fn json_field_names_are_stable() {
    let a = Activity::default();
    let mut e = end(1_796_613_887, "192.0.2.7");
    e.failed = true;
    e.error = Some("535 no".into());
    a.record(e);
    let json = serde_json::to_value(a.snapshot_at(Time::from_unix(1_796_613_900))).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k.join(",")
    };
    assert_eq!(
        keys(&json),
        "devices,generated,hourly,recent,upstream_logins,version"
    );
    assert_eq!(
        keys(&json["recent"][0]),
        "account,at,bytes_in,bytes_out,client,error,failed,host,messages,protocol,result,user"
    );
    assert_eq!(
        keys(&json["devices"][0]),
        "failures,first_seen,host,last_address,last_error,last_seen,messages,protocols,sessions,users"
    );
    assert_eq!(keys(&json["devices"][0]["last_error"]), "at,result,text");
    assert_eq!(keys(&json["hourly"][0]), "failures,hour,messages");
    assert_eq!(json["hourly"].as_array().unwrap().len(), 24);
    assert_eq!(json["recent"][0]["at"]["utc"], "2026-12-07T03:24:47Z");
    assert_eq!(json["recent"][0]["at"]["unix"], 1_796_613_887);
    assert_eq!(json["recent"][0]["protocol"], "smtp");
    assert_eq!(json["recent"][0]["result"], "ok");
    assert_eq!(json["hourly"][23]["hour"]["utc"], "2026-12-07T03:00:00Z");
}

#[test]
fn restore_round_trip() {
    let a = Activity::default();
    for (i, c) in ["192.0.2.1", "192.0.2.2", "2001:db8:9:9::1"]
        .iter()
        .enumerate()
    {
        let mut e = end(1_796_613_000 + i as i64, c);
        e.messages = i as u64;
        a.record(e);
    }
    let e = UpstreamError::Rejected {
        server: "smtp.qq.com:465".into(),
        email: "me@qq.com".into(),
        reply: b"535 Login Fail\r\n".to_vec(),
    };
    a.upstream_login(("main", Protocol::Smtp, "smtp.qq.com:465"), Err(&e));
    let now = Time::from_unix(1_796_613_100);
    let snap = a.snapshot_at(now);
    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    assert_eq!(Activity::restore(back).snapshot_at(now), snap);
}
