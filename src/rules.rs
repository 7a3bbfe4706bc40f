//! Deploy rules of an environment (`[env.prod.rules]`): the windows in which `apply`,
//! `destroy` and `rollback` may change it, and whether a run must be confirmed by typing
//! the environment's name.
//!
//! This module owns the window syntax (`"Tue-Thu 10:00-16:00 Europe/Berlin"`), the
//! question "is now inside a window, and if not, when does the next one open", and the
//! clock: `STACKWRIGHT_NOW` (RFC 3339) replaces the current time for that question only, a
//! hook for tests and CI dry runs that is announced whenever it is used. The stack loader
//! gives parse errors their file location; the CLI decides what to refuse.

use std::ops::Range;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The environment variable that replaces the clock for deploy windows.
pub const NOW_VAR: &str = "STACKWRIGHT_NOW";

/// The rules of the chosen environment; the default has none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub windows: Vec<Window>,
    pub confirm: Option<Confirm>,
}

/// `confirm = "type-env-name"`: the only confirmation rule there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    TypeEnvName,
}

impl Confirm {
    pub const NAMES: &'static [&'static str] = &["type-env-name"];

    pub fn parse(s: &str) -> Option<Confirm> {
        (s == "type-env-name").then_some(Confirm::TypeEnvName)
    }
}

/// One weekly window: some days, a time range in a time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// As written in the stack file, for messages.
    pub text: String,
    /// Monday first.
    days: [bool; 7],
    /// Minutes after local midnight; `end` may be 24:00 (1440).
    start: u32,
    end: u32,
    tz: Tz,
}

/// What is wrong with a window, and where inside its text (byte range).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowError {
    pub message: String,
    pub hint: String,
    pub at: Range<usize>,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const EXAMPLE: &str = "e.g. \"Tue-Thu 10:00-16:00 Europe/Berlin\" or \"Mon,Wed 09:00-17:00 UTC\"";

impl Window {
    /// `DAYS HH:MM-HH:MM ZONE`: days are `Mon`…`Sun`, ranges (`Tue-Thu`, `Fri-Mon`) and
    /// comma lists of both; the zone is an IANA name (`Europe/Berlin`, `UTC`).
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let words: Vec<(usize, &str)> = text
            .split_whitespace()
            .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
            .collect();
        let err =
            |message: String, hint: String, at: Range<usize>| WindowError { message, hint, at };
        let [(d_at, days), (t_at, times), (z_at, zone)] = words[..] else {
            return Err(err(
                format!(
                    "deploy window \"{text}\" must be three parts: days, a time range and a time zone"
                ),
                EXAMPLE.into(),
                0..text.len(),
            ));
        };
        let days = parse_days(days).map_err(|(m, r)| {
            err(
                m,
                format!(
                    "days are {} — a range like Tue-Thu, or a list like Mon,Wed,Fri",
                    DAYS.join(", ")
                ),
                d_at + r.start..d_at + r.end,
            )
        })?;
        let range = t_at..t_at + times.len();
        let time_err = |m: String| {
            err(
                m,
                "write the range as HH:MM-HH:MM in 24-hour time, e.g. 10:00-16:00".into(),
                range.clone(),
            )
        };
        let Some((a, b)) = times.split_once('-') else {
            return Err(time_err(format!("`{times}` is not a time range")));
        };
        let start = parse_time(a, false)
            .ok_or_else(|| time_err(format!("`{a}` is not a time (HH:MM, 00:00-23:59)")))?;
        let end = parse_time(b, true)
            .ok_or_else(|| time_err(format!("`{b}` is not a time (HH:MM, 00:00-24:00)")))?;
        if end <= start {
            return Err(err(
                format!("the window {times} ends before it starts"),
                "a window cannot cross midnight: split it in two, e.g. \"Fri 22:00-24:00 UTC\" and \"Sat 00:00-02:00 UTC\"".into(),
                range,
            ));
        }
        let tz: Tz = zone.parse().map_err(|_| {
            let names = || chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
            let hint = match names().find(|n| n.eq_ignore_ascii_case(zone)) {
                Some(n) => format!("did you mean `{n}`?"),
                None => match crate::error::suggest(zone, names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "use an IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC"
                            .into()
                    }
                },
            };
            err(
                format!("unknown time zone `{zone}`"),
                hint,
                z_at..z_at + zone.len(),
            )
        })?;
        Ok(Window {
            text: text.to_owned(),
            days,
            start,
            end,
            tz,
        })
    }

    /// The window's occurrences around `now`: (start, end) in UTC, in order, from the day
    /// before `now` (in the window's zone) to eight days after.
    fn occurrences(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let today = now.with_timezone(&self.tz).date_naive();
        (-1..=8)
            .filter_map(|d| today.checked_add_signed(Duration::days(d)))
            .filter(|day| self.days[day.weekday().num_days_from_monday() as usize])
            .filter_map(|day| Some((self.at(day, self.start)?, self.at(day, self.end)?)))
            .collect()
    }

    /// Local `day` at `minutes` after midnight, in UTC. A time the clocks skip (a spring
    /// DST gap) is taken as the first instant after the gap; a repeated one (autumn) as
    /// its first occurrence.
    fn at(&self, day: NaiveDate, minutes: u32) -> Option<DateTime<Utc>> {
        let local: NaiveDateTime =
            day.and_hms_opt(0, 0, 0)? + Duration::minutes(i64::from(minutes));
        (0..=120)
            .step_by(15)
            .find_map(|m| {
                self.tz
                    .from_local_datetime(&(local + Duration::minutes(m)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.occurrences(now)
            .iter()
            .any(|(s, e)| *s <= now && now < *e)
    }

    /// When the window next opens after `now`.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.occurrences(now)
            .into_iter()
            .map(|(s, _)| s)
            .find(|s| *s > now)
    }

    /// `Tue 2026-12-08 10:00 CET (Europe/Berlin), 2026-12-08 09:00 UTC`.
    pub fn describe(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        format!(
            "{} ({}), {}",
            local.format("%a %Y-%m-%d %H:%M %Z"),
            self.tz.name(),
            t.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

/// `Tue-Thu`, `Mon,Wed,Fri`, `Fri-Mon`, `Sat`: the days, Monday first; errors point into
/// the word.
fn parse_days(s: &str) -> Result<[bool; 7], (String, Range<usize>)> {
    let mut days = [false; 7];
    let mut offset = 0;
    for item in s.split(',') {
        let at = offset..offset + item.len();
        offset += item.len() + 1;
        let day = |d: &str| -> Result<usize, (String, Range<usize>)> {
            DAYS.iter()
                .position(|x| x.eq_ignore_ascii_case(d))
                .ok_or_else(|| (format!("`{d}` is not a day"), at.clone()))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // A range may wrap the week: Fri-Mon is Fri, Sat, Sun, Mon.
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(item)?] = true,
        }
    }
    Ok(days)
}

fn parse_time(s: &str, end: bool) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Whether now is inside one of the windows.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The environment has no windows: any time is fine.
    Unrestricted,
    Open,
    /// Outside every window; the next one to open, and when (`None`: none within a week,
    /// which the syntax makes impossible but is not assumed).
    Closed {
        next: Option<(Window, DateTime<Utc>)>,
    },
}

pub fn check(windows: &[Window], now: DateTime<Utc>) -> Verdict {
    if windows.is_empty() {
        return Verdict::Unrestricted;
    }
    if windows.iter().any(|w| w.is_open(now)) {
        return Verdict::Open;
    }
    let next = windows
        .iter()
        .filter_map(|w| w.next_open(now).map(|t| (w.clone(), t)))
        .min_by_key(|(_, t)| *t);
    Verdict::Closed { next }
}

/// The time deploy windows are checked at, and whether it came from `STACKWRIGHT_NOW`.
pub fn now() -> Result<(DateTime<Utc>, bool), String> {
    match std::env::var(NOW_VAR) {
        Ok(v) if !v.is_empty() => DateTime::parse_from_rfc3339(&v)
            .map(|t| (t.with_timezone(&Utc), true))
            .map_err(|e| {
                format!("{NOW_VAR}={v} is not an RFC 3339 time ({e}), e.g. 2026-12-04T12:00:00Z")
            }),
        _ => Ok((Utc::now(), false)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_is_open_on_its_days_and_hours_in_its_zone() {
        let w = Window::parse("Tue-Thu 10:00-16:00 Europe/Berlin").unwrap();
        // Wednesday 2026-12-02, 12:00 UTC = 13:00 CET.
        assert!(w.is_open(t("2026-12-02T12:00:00Z")));
        // 09:30 UTC = 10:30 CET is in; 09:00 UTC = 10:00 CET is the first minute.
        assert!(w.is_open(t("2026-12-02T09:00:00Z")));
        assert!(!w.is_open(t("2026-12-02T08:59:59Z")));
        // 15:00 UTC = 16:00 CET: closed (the end is exclusive).
        assert!(!w.is_open(t("2026-12-02T15:00:00Z")));
        // Friday: closed; the next window is Tuesday 10:00 CET = 09:00 UTC.
        let fri = t("2026-12-04T12:00:00Z");
        assert_eq!(fri.with_timezone(&w.tz).weekday(), Weekday::Fri);
        assert!(!w.is_open(fri));
        let next = w.next_open(fri).unwrap();
        assert_eq!(next, t("2026-12-08T09:00:00Z"));
        assert_eq!(
            w.describe(next),
            "Tue 2026-12-08 10:00 CET (Europe/Berlin), 2026-12-08 09:00 UTC"
        );
        // In summer Berlin is UTC+2.
        assert_eq!(
            w.next_open(t("2026-07-03T12:00:00Z")).unwrap(),
            t("2026-07-07T08:00:00Z")
        );
    }

    #[test]
    fn the_earliest_of_several_windows_is_named() {
        let ws = [
            Window::parse("Mon 09:00-10:00 UTC").unwrap(),
            Window::parse("Sat,Sun 20:00-24:00 America/New_York").unwrap(),
        ];
        match check(&ws, t("2026-12-04T12:00:00Z")) {
            Verdict::Closed {
                next: Some((w, at)),
            } => {
                // Saturday 20:00 EST = Sunday 01:00 UTC.
                assert_eq!(w.text, "Sat,Sun 20:00-24:00 America/New_York");
                assert_eq!(at, t("2026-12-06T01:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(check(&ws, t("2026-12-07T09:30:00Z")), Verdict::Open);
        assert_eq!(check(&[], t("2026-12-04T12:00:00Z")), Verdict::Unrestricted);
        // A wrapping range, and 24:00.
        let w = Window::parse("fri-mon 22:00-24:00 UTC").unwrap();
        assert!(w.is_open(t("2026-12-06T23:59:00Z")), "Sunday");
        assert!(!w.is_open(t("2026-12-08T23:00:00Z")), "Tuesday");
    }

    #[test]
    fn bad_windows_say_which_part_is_wrong() {
        let e = Window::parse("Tue-Thu 10:00-16:00 Europe/Berln").unwrap_err();
        assert_eq!(e.message, "unknown time zone `Europe/Berln`");
        assert_eq!(e.hint, "did you mean `Europe/Berlin`?");
        assert_eq!(e.at, 20..32);
        let e = Window::parse("europe/berlin").unwrap_err();
        assert!(e.message.contains("three parts"), "{e:?}");
        let e = Window::parse("Tue-Thr 10:00-16:00 UTC").unwrap_err();
        assert_eq!(e.message, "`Thr` is not a day");
        assert_eq!(e.at, 0..7);
        let e = Window::parse("Mon,Tue,Xyz 10:00-16:00 UTC").unwrap_err();
        assert_eq!(e.at, 8..11);
        let e = Window::parse("Mon 10:00-25:00 UTC").unwrap_err();
        assert!(e.message.contains("`25:00` is not a time"), "{e:?}");
        let e = Window::parse("Mon 16:00-10:00 UTC").unwrap_err();
        assert!(e.hint.contains("cannot cross midnight"), "{e:?}");
        let e = Window::parse("Mon 10:00-16:00 europe/berlin").unwrap_err();
        assert_eq!(e.hint, "did you mean `Europe/Berlin`?");
    }

    #[test]
    fn a_dst_gap_opens_the_window_after_the_gap() {
        // 2026-03-29 02:00-03:00 does not exist in Berlin.
        let w = Window::parse("Sun 02:30-04:00 Europe/Berlin").unwrap();
        let next = w.next_open(t("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, t("2026-03-29T01:00:00Z"), "03:00 CEST");
    }
}
