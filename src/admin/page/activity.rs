//! The page's activity sections, from [`crate::activity::Snapshot`]: each account's last
//! upstream login per protocol, the devices of the last 7 days, the recent session ends
//! (all, or failures only by `?failures=1`: a link, no script) and a 24-hour chart of
//! messages and failures per hour as inline SVG. Every value through [`esc`].

use std::fmt::Write as _;

use super::esc;
use crate::activity::{HourBucket, Snapshot, Time, UpstreamLogin};
use crate::admin::i18n::Words;

/// `2026-12-07T03:24:47Z` → `2026-12-07 03:24:47 UTC`.
fn when(t: Time) -> String {
    let s = t.rfc3339();
    let s = s.strip_suffix('Z').unwrap_or(&s).replacen('T', " ", 1);
    format!("{s} UTC")
}

/// One account's last logins, one line per protocol.
pub fn logins(logins: &[UpstreamLogin], w: &Words) -> String {
    if logins.is_empty() {
        return format!("<span class=\"hint\">{}</span>", esc(w.not_recorded));
    }
    let lines: Vec<String> = logins
        .iter()
        .map(|l| {
            let head = format!("{} <span class=\"hint\">{}</span>", l.protocol, when(l.at));
            if l.ok {
                return format!("{head} <span class=\"ok\">{}</span>", esc(w.ok));
            }
            let error = l.error.as_deref().unwrap_or("");
            let hint = l.hint.as_deref().map_or(String::new(), |h| {
                format!("<br><span class=\"hint\">{}</span>", esc(h))
            });
            format!("{head} <code class=\"err\">{}</code>{hint}", esc(error))
        })
        .collect();
    lines.join("<br>")
}

/// The devices table.
pub fn devices(out: &mut String, a: &Snapshot, w: &Words) {
    let _ = write!(out, "<h2 id=\"devices\">{}</h2>", esc(w.devices));
    if a.devices.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(w.no_activity));
        return;
    }
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(w.client),
        esc(w.protocol),
        esc(w.user),
        esc(w.last_seen),
        esc(w.messages),
        esc(w.last_error)
    );
    for d in &a.devices {
        let protocols: Vec<String> = d.protocols.iter().map(|p| p.to_string()).collect();
        let error = d.last_error.as_ref().map_or(String::new(), |e| {
            format!(
                "<code class=\"err\">{}</code> <span class=\"hint\">{} · {}</span>",
                esc(e.text.as_deref().unwrap_or(e.result.label())),
                esc(e.result.label()),
                when(e.at)
            )
        });
        let class = if d.last_error.is_some() {
            "device failing"
        } else {
            "device"
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{error}</td></tr>",
            esc(&d.last_address),
            esc(&protocols.join(", ")),
            esc(&d.users.join(", ")),
            when(d.last_seen),
            d.messages
        );
    }
    out.push_str("</table>");
}

/// The recent session ends (failures only when `failures_only`).
pub fn recent(out: &mut String, a: &Snapshot, w: &Words, failures_only: bool) {
    let _ = write!(
        out,
        "<h2 id=\"recent\">{}</h2><p><a href=\"/#recent\">{}</a> · \
         <a href=\"/?failures=1#recent\">{}</a></p>",
        esc(w.recent),
        esc(w.all),
        esc(w.failures_only)
    );
    let rows: Vec<_> = a
        .recent
        .iter()
        .filter(|e| !failures_only || e.failed)
        .collect();
    if rows.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(w.no_activity));
        return;
    }
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr>",
        esc(w.time),
        esc(w.client),
        esc(w.protocol),
        esc(w.user),
        esc(w.result),
        esc(w.messages),
        esc(w.bytes)
    );
    for e in rows {
        let class = if e.failed { "err" } else { "ok" };
        let error = e
            .error
            .as_deref()
            .map_or(String::new(), |t| format!("<br><code>{}</code>", esc(t)));
        let _ = write!(
            out,
            "<tr class=\"session\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td class=\"{class}\">{}{error}</td><td>{}</td><td>{} / {}</td></tr>",
            when(e.at),
            esc(&e.client),
            e.protocol,
            esc(e.user.as_deref().unwrap_or("-")),
            esc(e.result.label()),
            e.messages,
            e.bytes_in,
            e.bytes_out
        );
    }
    out.push_str("</table>");
}

/// The 24-hour chart: a bar pair per hour, messages (green) and failures (red), scaled
/// to the busiest hour; the hours' counts are in each bar's `<title>`.
pub fn chart(out: &mut String, hours: &[HourBucket], w: &Words) {
    const W: usize = 24 * 30;
    const H: u64 = 120;
    let top = hours
        .iter()
        .map(|h| h.messages.max(h.failures))
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = write!(
        out,
        "<h2 id=\"chart\">{}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" \
         height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{}\">",
        esc(w.chart),
        H + 20,
        H + 20,
        esc(w.chart)
    );
    for (i, h) in hours.iter().enumerate() {
        let x = i * 30;
        for (n, (count, colour)) in [(h.messages, "#3a3"), (h.failures, "#c33")]
            .iter()
            .enumerate()
        {
            let height = count * H / top;
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"{height}\" fill=\"{colour}\">\
                 <title>{} {}: {count}</title></rect>",
                x + 2 + n * 13,
                H - height,
                when(h.hour),
                esc(if n == 0 { w.messages } else { w.failures }),
            );
        }
        if i % 6 == 0 {
            let label = when(h.hour);
            let hh = label.get(11..16).unwrap_or("");
            let _ = write!(
                out,
                "<text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#555\">{}</text>",
                H + 15,
                esc(hh)
            );
        }
    }
    let _ = write!(
        out,
        "</svg><p class=\"hint\"><span style=\"color:#3a3\">■</span> {} \
         <span style=\"color:#c33\">■</span> {} (UTC)</p>",
        esc(w.messages),
        esc(w.failures)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::i18n::Lang;

    #[test]
    fn times_read_as_utc() {
        let cases = [
            (0, "1970-01-01 00:00:00 UTC"),
            (1796613887, "2026-12-07 03:24:47 UTC"),
        ];
        for (unix, want) in cases {
            assert_eq!(when(Time::from_unix(unix)), want, "{unix}");
        }
    }

    #[test]
    fn chart_bars_scale_to_the_busiest_hour() {
        let bucket = |i: i64, messages, failures| HourBucket {
            hour: Time::from_unix(i * 3600),
            messages,
            failures,
        };
        let cases: [(Vec<HourBucket>, &[&str]); 2] = [
            // (hours, what the SVG must contain)
            (
                (0..24).map(|i| bucket(i, 0, 0)).collect(),
                &["height=\"0\""],
            ),
            (
                (0..24)
                    .map(|i| bucket(i, if i == 23 { 4 } else { 2 }, 1))
                    .collect(),
                &[
                    "height=\"120\"",
                    "height=\"60\"",
                    "height=\"30\"",
                    ": 4</title>",
                ],
            ),
        ];
        for (hours, needles) in cases {
            let mut out = String::new();
            chart(&mut out, &hours, Lang::En.words());
            assert_eq!(out.matches("<rect").count(), 48, "{out}");
            for n in needles {
                assert!(out.contains(n), "{n} missing: {out}");
            }
        }
    }
}
