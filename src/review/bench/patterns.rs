//! Patterns: how many cases name each act, each place and facility, and each week it
//! happened, as bar charts drawn here as SVG with plotters, every bar a link to the
//! list of the cases behind it, and the same figures as CSV. Counted over the cases
//! the list's filters keep, so a chart can be narrowed (one facility's acts, one
//! week's places).

use super::filters::{date_in, Filters};
use super::CaseView;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Bars on one chart at most (the rest are counted in the CSV).
const MAX_BARS: usize = 40;
const ROW: i32 = 22;
const LABEL_WIDTH: i32 = 280;
const BAR_WIDTH: i32 = 360;

/// One bar: what it counts (the form's value, and its label to show), how many
/// cases, and the filters that list them.
pub struct Bar {
    pub value: String,
    pub label: String,
    pub count: usize,
    pub filters: Filters,
}

pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub bars: Vec<Bar>,
    /// Cases this chart could not place (no date, no facility named).
    pub unplaced: usize,
}

/// Every chart over `cases`, which `filters` chose.
pub fn charts(cases: &[&CaseView], filters: &Filters) -> Vec<Chart> {
    let mut acts = BTreeMap::new();
    let mut places = BTreeMap::new();
    let mut facilities = BTreeMap::new();
    let mut weeks = BTreeMap::new();
    let (mut no_facility, mut no_date) = (0, 0);
    // Each value a case gives, once per case, counted as the filters match it (in any
    // submission); values the form does not offer are not counted as if it did.
    let count = |counts: &mut BTreeMap<String, usize>, case: &CaseView, field: &str| {
        let allowed =
            crate::form::field(field).map(crate::form::Field::choices).unwrap_or_default();
        let mut named: Vec<&str> = case.answers(field).filter(|v| allowed.contains(v)).collect();
        named.sort_unstable();
        named.dedup();
        for value in named {
            *counts.entry(value.to_string()).or_insert(0) += 1;
        }
    };
    for case in cases {
        count(&mut acts, case, "acts");
        count(&mut places, case, "place");
        match case.facility() {
            Some(name) => *facilities.entry(name).or_insert(0) += 1,
            None => no_facility += 1,
        }
        match case.happened() {
            Some(day) => *weeks.entry(monday_of(day)).or_insert(0) += 1,
            None => no_date += 1,
        }
    }
    let bars = |counts: BTreeMap<String, usize>, field: &str, set: &dyn Fn(&mut Filters, &str)| {
        let lang = crate::i18n::Lang::En;
        counts
            .into_iter()
            .map(|(value, count)| Bar {
                filters: filters.and(|f| set(f, &value)),
                label: crate::form::choice_label(field, &value, lang),
                value,
                count,
            })
            .collect::<Vec<_>>()
    };
    let by_count = |mut bars: Vec<Bar>| {
        bars.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
        bars
    };
    let weeks: BTreeMap<String, usize> =
        weeks.into_iter().map(|(monday, n)| (monday.to_string(), n)).collect();
    vec![
        Chart {
            id: "acts",
            title: "Cases by act",
            bars: by_count(bars(acts, "acts", &|f, v| f.act = v.into())),
            unplaced: 0,
        },
        Chart {
            id: "places",
            title: "Cases by kind of place",
            bars: by_count(bars(places, "place", &|f, v| f.place = v.into())),
            unplaced: 0,
        },
        Chart {
            id: "facilities",
            title: "Cases by facility named",
            bars: by_count(bars(facilities, "place_detail", &|f, v| f.facility_is = v.into())),
            unplaced: no_facility,
        },
        Chart {
            id: "weeks",
            title: "Cases by the week it happened (weeks start on Monday)",
            bars: bars(weeks, "when", &|f, monday| {
                let start = date_in(monday).unwrap_or(time::Date::MIN);
                let end = start.checked_add(time::Duration::days(6)).unwrap_or(start);
                f.happened_from = monday.into();
                f.happened_to = end.to_string();
            }),
            unplaced: no_date,
        },
    ]
}

fn monday_of(day: time::Date) -> time::Date {
    let back = time::Duration::days(i64::from(day.weekday().number_days_from_monday()));
    day.checked_sub(back).unwrap_or(day)
}

impl Chart {
    /// The chart as an SVG drawing to put in the page; each bar links to `base/?filters`.
    pub fn svg(&self, base: &str) -> String {
        let bars = &self.bars[..self.bars.len().min(MAX_BARS)];
        let height = ROW * (bars.len() as i32 + 1) + 8;
        let mut svg = String::new();
        let most = bars.iter().map(|b| b.count).max().unwrap_or(1).max(1);
        let width_of = |count: usize| (BAR_WIDTH as usize * count / most) as i32;
        let drawn = (|| -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
            let root = SVGBackend::with_string(&mut svg, (720, height as u32)).into_drawing_area();
            root.fill(&WHITE)?;
            let font = ("sans-serif", 13).into_font();
            for (n, bar) in bars.iter().enumerate() {
                let top = ROW * n as i32 + 4;
                root.draw(&Text::new(label(&bar.label), (4, top + 4), font.clone()))?;
                let end = LABEL_WIDTH + width_of(bar.count).max(1);
                let fill = RGBColor(0x1f, 0x5f, 0x99).filled();
                root.draw(&Rectangle::new([(LABEL_WIDTH, top), (end, top + ROW - 6)], fill))?;
                root.draw(&Text::new(bar.count.to_string(), (end + 6, top + 4), font.clone()))?;
            }
            let axis = ROW * bars.len() as i32 + 2;
            root.draw(&PathElement::new(
                vec![(LABEL_WIDTH, 2), (LABEL_WIDTH, axis)],
                BLACK.stroke_width(1),
            ))?;
            root.present()
        })();
        if drawn.is_err() {
            return String::new();
        }
        // Each bar's row a link to its cases, laid over the drawing (plotters draws no
        // links); `href` and titles are escaped for the page.
        let mut links = String::new();
        for (n, bar) in bars.iter().enumerate() {
            let href = escape(&format!("{base}/?{}", bar.filters.query()));
            links.push_str(&format!(
                "<a href=\"{href}\"><rect x=\"0\" y=\"{}\" width=\"720\" height=\"{ROW}\" \
                 fill=\"transparent\"><title>{}: {} cases</title></rect></a>",
                ROW * n as i32 + 1,
                escape(&bar.label),
                bar.count
            ));
        }
        match svg.rfind("</svg>") {
            Some(end) => format!("{}{links}</svg>", &svg[..end]),
            None => String::new(),
        }
    }
}

/// A label short enough for its column.
fn label(text: &str) -> String {
    let mut short: String = text.chars().take(36).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Every chart's figures as CSV: chart, value, cases.
pub fn csv(charts: &[Chart]) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["chart", "value", "cases"])?;
    for chart in charts {
        for bar in &chart.bars {
            let value = super::uwazi::spreadsheet_safe(&bar.value);
            out.write_record([chart.id, &value, &bar.count.to_string()])?;
        }
        if chart.unplaced > 0 {
            out.write_record([chart.id, "(not given)", &chart.unplaced.to_string()])?;
        }
    }
    out.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
