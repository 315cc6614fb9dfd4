//! The list's filters, from the structured form and the triage: one set of rules for
//! the list, the charts and their figures, so a bar's count is the number of cases its
//! link lists.

use super::triage::{CaseTriage, Status};
use super::CaseView;
use serde::{Deserialize, Serialize};
use time::Date;

/// What the list is narrowed to; every field empty means everything. Field names are
/// the query string's.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Words, in any of their forms (the search).
    pub q: String,
    pub status: String,
    pub tag: String,
    /// An act ticked (the Istanbul Protocol boxes).
    pub act: String,
    /// The kind of place (street, hospital, police, detention, other).
    pub place: String,
    /// Words in the place's name (`place_detail`), any case; `facility_is` is one name
    /// exactly as the charts count it.
    pub facility: String,
    pub facility_is: String,
    pub agency: String,
    /// Who may read it, by the latest submission.
    pub consent: String,
    pub help: String,
    /// `photo`, `video` or `none`.
    pub media: String,
    /// When it happened (the date in the answer to "when"), and when received.
    pub happened_from: String,
    pub happened_to: String,
    pub received_from: String,
    pub received_to: String,
    /// `1`: only cases holding a file also found in another case.
    pub shared: String,
}

/// Why a list or its charts could not be drawn, in words for the reviewer.
#[derive(Debug)]
pub struct NotListed(pub String);

impl std::fmt::Display for NotListed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The dates a filter was given, read.
struct Dates {
    happened: (Option<Date>, Option<Date>),
    received: (Option<Date>, Option<Date>),
}

impl Filters {
    /// From a query string; an unreadable one is refused with what to fix.
    pub fn parse(query: &str) -> Result<Filters, NotListed> {
        let filters: Filters = serde_urlencoded::from_str(query)
            .map_err(|e| NotListed(format!("the address's filters cannot be read: {e}")))?;
        filters.dates()?;
        if !filters.status.is_empty() && Status::parse(&filters.status).is_none() {
            return Err(NotListed(format!("{:?} is not a status", filters.status)));
        }
        Ok(filters)
    }

    fn dates(&self) -> Result<Dates, NotListed> {
        let one = |text: &str| -> Result<Option<Date>, NotListed> {
            if text.is_empty() {
                return Ok(None);
            }
            let refused = || NotListed(format!("{text:?} is not a date (YYYY-MM-DD)"));
            date_in(text).map(Some).ok_or_else(refused)
        };
        Ok(Dates {
            happened: (one(&self.happened_from)?, one(&self.happened_to)?),
            received: (one(&self.received_from)?, one(&self.received_to)?),
        })
    }

    /// This query string (empty fields left out), to build links with.
    pub fn query(&self) -> String {
        serde_urlencoded::to_string(self)
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.ends_with('='))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// These filters and one more.
    #[must_use]
    pub fn and(&self, set: impl FnOnce(&mut Filters)) -> Filters {
        let mut more = self.clone();
        set(&mut more);
        more
    }

    /// Whether any filter other than the words is set.
    pub fn narrowed(&self) -> bool {
        !self.and(|f| f.q.clear()).query().is_empty()
    }

    /// Whether a case passes every filter but the words (the search does those).
    pub fn keeps(&self, case: &CaseView, triage: &CaseTriage, shared: bool) -> bool {
        let Ok(dates) = self.dates() else { return false };
        // Any case, spaces made single: `ИВС  ДП` is `ивс дп`.
        let plain =
            |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let contains = |field: &str, words: &str| {
            let words = plain(words);
            words.is_empty() || case.answers(field).any(|a| plain(a).contains(&words))
        };
        let given =
            |field: &str, value: &str| value.is_empty() || case.answers(field).any(|a| a == value);
        let within = |date: Option<Date>, (from, to): (Option<Date>, Option<Date>)| {
            (from.is_none() && to.is_none())
                || date.is_some_and(|d| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t))
        };
        let received = case.submissions.iter().filter_map(|s| date_in(&s.received_at));
        let media = |kind: &str| case.files().any(|f| f.media_type.starts_with(kind));
        Status::parse(&self.status).is_none_or(|s| triage.status == s)
            && (self.tag.is_empty() || triage.tags.contains(&self.tag.to_lowercase()))
            && given("acts", &self.act)
            && given("place", &self.place)
            && given("help_wanted", &self.help)
            && contains("place_detail", &self.facility)
            && (self.facility_is.is_empty()
                || case.facility().as_deref() == Some(&self.facility_is))
            && contains("agency", &self.agency)
            && (self.consent.is_empty() || case.consent() == Some(self.consent.as_str()))
            && match self.media.as_str() {
                "photo" => media("image/"),
                "video" => media("video/"),
                "none" => case.files().next().is_none(),
                _ => true,
            }
            && within(case.happened(), dates.happened)
            && (dates.received == (None, None)
                || received.into_iter().any(|d| within(Some(d), dates.received)))
            && (self.shared.is_empty() || shared)
    }
}

/// The first date written in `text`: `2022-01-06`, `06.01.2022` or `06/01/2022` (day
/// first, as in Kazakhstan and Russia), or the date of an RFC 3339 time; years 1900 to
/// 2100 only (any other is a slip, or a hostile answer meant to break the counting).
pub fn date_in(text: &str) -> Option<Date> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | 'T' | '(' | ')')).find_map(
        |word| {
            let word = word.trim_matches(|c: char| !c.is_ascii_digit());
            let parts: Vec<&str> = word.split(['-', '.', '/']).collect();
            let [a, b, c] = parts[..] else { return None };
            let number = |s: &str| s.parse::<u16>().ok().filter(|_| (1..=4).contains(&s.len()));
            let (year, month, day) = if a.len() == 4 {
                (number(a)?, number(b)?, number(c)?)
            } else if c.len() == 4 {
                (number(c)?, number(b)?, number(a)?)
            } else {
                return None;
            };
            let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
            if !(1900..=2100).contains(&year) {
                return None;
            }
            Date::from_calendar_date(i32::from(year), month, u8::try_from(day).ok()?).ok()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_people_write_them_and_junk_is_no_date() {
        let day = Date::from_calendar_date(2022, time::Month::January, 6).unwrap();
        assert_eq!(date_in("6 января, точнее 06.01.2022 вечером"), Some(day));
        assert_eq!(date_in("2022-01-06"), Some(day));
        assert_eq!(date_in("06/01/2022"), Some(day));
        assert_eq!(date_in("2022-01-06T13:00:00Z"), Some(day));
        assert_eq!(date_in("31.02.2022"), None);
        assert_eq!(date_in("в январе"), None);
        assert_eq!(date_in("1.2.3"), None);
        assert_eq!(date_in("31.12.9999"), None);
        assert_eq!(date_in("0000-01-01"), None);
    }

    #[test]
    fn a_query_string_round_trips_and_bad_filters_are_refused() {
        let filters = Filters::parse("act=burns&happened_from=2022-01-05&q=%D1%83").unwrap();
        assert_eq!(filters.q, "у");
        assert_eq!(Filters::parse(&filters.query()).unwrap().act, "burns");
        assert!(filters.narrowed());
        assert!(!Filters::parse("q=x").unwrap().narrowed());
        assert!(Filters::parse("happened_to=yesterday").is_err());
        assert!(Filters::parse("status=burnt").is_err());
    }
}
