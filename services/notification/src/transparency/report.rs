//! The transparency report of a period: decided requests by jurisdiction × category × outcome,
//! the shares granted in full, in part and refused, time from receipt to decision (median and
//! 90th percentile), and the share of legal deadlines met; as JSON, CSV or an SVG chart. It holds
//! counts and durations only.
//!
//! Percentiles are nearest-rank: the p-th percentile is the smallest time that at least p % of
//! the requests were decided within. Time to decision is wall-clock time from receipt to the
//! decision taking effect (time awaiting the agency's answers included); a deadline is met when
//! the decision took effect by the deadline as it stood then (moved later by those pauses, as
//! the law allows).

use std::collections::BTreeMap;

use plotters::prelude::*;
use serde_json::{Value, json};

use super::{Decided, Period, RequestOutcome, csv, rfc3339};
use crate::error::NotificationError;

/// Figures of a group of decided requests.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests: usize,
    pub items: usize,
    /// Seconds from receipt to decision of the requests whose receipt is known.
    pub decision_secs: Vec<i64>,
    pub deadlines_met: usize,
    pub deadlines_missed: usize,
}

impl Figures {
    fn add(&mut self, d: &Decided) {
        self.requests += 1;
        self.items += d.items.len();
        if let Some(received) = d.row.received_at {
            self.decision_secs.push((d.row.decided_at - received).max(0) / 1000);
        }
        match d.row.due_at {
            Some(due) if d.row.decided_at <= due => self.deadlines_met += 1,
            Some(_) => self.deadlines_missed += 1,
            None => {}
        }
    }

    /// The nearest-rank `p`-th percentile of the times to decision, in seconds.
    pub fn percentile(&self, p: u32) -> Option<i64> {
        let mut v = self.decision_secs.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = (u64::from(p) * v.len() as u64).div_ceil(100).max(1) as usize;
        Some(v[rank - 1])
    }

    pub fn share_deadlines_met(&self) -> Option<f64> {
        let with = self.deadlines_met + self.deadlines_missed;
        (with > 0).then(|| ratio(self.deadlines_met, with))
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0 }
}

/// The report of one period.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub period: Period,
    pub overall: Figures,
    pub by_outcome: BTreeMap<RequestOutcome, Figures>,
    /// (jurisdiction, category short name, outcome) → figures.
    pub groups: BTreeMap<(String, String, RequestOutcome), Figures>,
    /// Jurisdiction → requests per outcome, for the chart.
    pub by_jurisdiction: BTreeMap<String, BTreeMap<RequestOutcome, usize>>,
}

impl Report {
    pub fn of(period: Period, decided: &[Decided]) -> Report {
        let mut r = Report { period, ..Default::default() };
        for d in decided {
            let outcome = d.outcome();
            let jurisdiction = if d.row.jurisdiction.is_empty() { "??".to_owned() } else { d.row.jurisdiction.clone() };
            let category = crs_proto::convert::short_name_of::<crs_proto::common::Category>(d.row.category).to_owned();
            r.overall.add(d);
            r.by_outcome.entry(outcome).or_default().add(d);
            r.groups.entry((jurisdiction.clone(), category, outcome)).or_default().add(d);
            *r.by_jurisdiction.entry(jurisdiction).or_default().entry(outcome).or_default() += 1;
        }
        r
    }

    pub fn requests(&self) -> usize {
        self.overall.requests
    }

    fn count(&self, outcome: RequestOutcome) -> usize {
        self.by_outcome.get(&outcome).map_or(0, |f| f.requests)
    }

    pub fn share(&self, outcome: RequestOutcome) -> f64 {
        ratio(self.count(outcome), self.overall.requests)
    }

    pub fn to_json(&self) -> Value {
        let (after, before) = self.period.describe();
        let figures = |f: &Figures| {
            json!({
                "requests": f.requests,
                "items": f.items,
                "median_seconds": f.percentile(50),
                "p90_seconds": f.percentile(90),
                "deadlines_met": f.deadlines_met,
                "deadlines_missed": f.deadlines_missed,
            })
        };
        let rows: Vec<Value> = self
            .groups
            .iter()
            .map(|((j, c, o), f)| {
                let mut v = figures(f);
                let m = v.as_object_mut().expect("an object");
                m.insert("jurisdiction".into(), j.clone().into());
                m.insert("category".into(), c.clone().into());
                m.insert("outcome".into(), o.name().into());
                v
            })
            .collect();
        json!({
            "period": {"decided_after": after, "decided_before": before},
            "generated_at": rfc3339(crs_platform::time::now_millis()),
            "requests": self.overall.requests,
            "items": self.overall.items,
            "outcomes": RequestOutcome::ALL.iter().map(|o| (o.name().to_owned(), Value::from(self.count(*o)))).collect::<serde_json::Map<_, _>>(),
            "shares": {
                "granted_in_full": self.share(RequestOutcome::GrantedInFull),
                "granted_in_part": self.share(RequestOutcome::GrantedInPart),
                "refused": self.share(RequestOutcome::Refused),
                "already_unavailable": self.share(RequestOutcome::AlreadyUnavailable),
            },
            "time_to_decision": {
                "requests": self.overall.decision_secs.len(),
                "median_seconds": self.overall.percentile(50),
                "p90_seconds": self.overall.percentile(90),
            },
            "deadlines": {
                "with_deadline": self.overall.deadlines_met + self.overall.deadlines_missed,
                "met": self.overall.deadlines_met,
                "missed": self.overall.deadlines_missed,
                "share_met": self.overall.share_deadlines_met(),
            },
            "by_jurisdiction_category_outcome": rows,
        })
    }

    /// One row per (jurisdiction, category, outcome), then a row per outcome over everything
    /// (`ALL`, `ALL`, outcome: its share is the share granted in full, in part, refused) and the
    /// total (`ALL`, `ALL`, `ALL`).
    pub fn to_csv(&self) -> String {
        const COLUMNS: [&str; 11] = [
            "jurisdiction",
            "category",
            "outcome",
            "requests",
            "items",
            "share_of_requests",
            "median_seconds",
            "p90_seconds",
            "deadlines_met",
            "deadlines_missed",
            "share_deadlines_met",
        ];
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let row = |j: &str, c: &str, o: &str, f: &Figures| {
            csv::line(&[
                j.to_owned(),
                c.to_owned(),
                o.to_owned(),
                f.requests.to_string(),
                f.items.to_string(),
                ratio(f.requests, self.overall.requests).to_string(),
                opt(f.percentile(50)),
                opt(f.percentile(90)),
                f.deadlines_met.to_string(),
                f.deadlines_missed.to_string(),
                f.share_deadlines_met().map(|s| s.to_string()).unwrap_or_default(),
            ])
        };
        let mut out = csv::line(&COLUMNS);
        for ((j, c, o), f) in &self.groups {
            out.push_str(&row(j, c, o.name(), f));
        }
        for o in RequestOutcome::ALL {
            out.push_str(&row("ALL", "ALL", o.name(), self.by_outcome.get(&o).unwrap_or(&Figures::default())));
        }
        out.push_str(&row("ALL", "ALL", "ALL", &self.overall));
        out
    }

    /// A grouped bar chart: per jurisdiction, the requests granted in full, in part and refused.
    pub fn to_svg(&self) -> Result<String, NotificationError> {
        let mut svg = String::new();
        draw(self, &mut svg).map_err(|e| NotificationError::Internal(anyhow::anyhow!("drawing the chart: {e}")))?;
        Ok(svg)
    }
}

/// The chart's series: label and colour.
pub const SERIES: [(RequestOutcome, &str, RGBColor); 3] = [
    (RequestOutcome::GrantedInFull, "granted in full", RGBColor(0x1b, 0x9e, 0x77)),
    (RequestOutcome::GrantedInPart, "granted in part", RGBColor(0xd9, 0x5f, 0x02)),
    (RequestOutcome::Refused, "refused", RGBColor(0x75, 0x70, 0xb3)),
];

fn draw(r: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let jurisdictions: Vec<&String> = r.by_jurisdiction.keys().collect();
    let n = jurisdictions.len().max(1);
    let height = |j: &str, o: RequestOutcome| r.by_jurisdiction.get(j).and_then(|m| m.get(&o)).copied().unwrap_or(0);
    let top = r.by_jurisdiction.values().flat_map(|m| m.values()).copied().max().unwrap_or(0).max(1);
    let width = (160 + 110 * n as u32).max(640);
    let (after, before) = r.period.describe();
    let title = format!(
        "Government requests decided {} to {}, by outcome",
        after.as_deref().map(|s| &s[..10]).unwrap_or("(start)"),
        before.as_deref().map(|s| &s[..10]).unwrap_or("(now)"),
    );
    let root = SVGBackend::with_string(svg, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, 0f64..(top as f64 * 1.15).ceil())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("requests")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (s, (outcome, label, colour)) in SERIES.iter().enumerate() {
        let bars = jurisdictions.iter().enumerate().map(|(i, j)| {
            let x0 = i as f64 + 0.1 + s as f64 * 0.27;
            Rectangle::new([(x0, 0.0), (x0 + 0.25, height(j, *outcome) as f64)], colour.filled())
        });
        chart
            .draw_series(bars)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw()?;
    // The jurisdictions under their groups of bars.
    for (i, j) in jurisdictions.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(j.to_string(), (x - 8, y + 10), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_without_decisions_reports_zeros_and_draws_an_empty_chart() {
        let r = Report::of(Period::default(), &[]);
        let json = r.to_json();
        assert_eq!((json["requests"].as_u64(), json["time_to_decision"]["median_seconds"].is_null()), (Some(0), true));
        assert!(json["deadlines"]["share_met"].is_null());
        let svg = r.to_svg().unwrap();
        roxmltree::Document::parse(&svg).unwrap();
        assert!(r.to_csv().ends_with("ALL,ALL,ALL,0,0,0,,,0,0,\r\n"), "{}", r.to_csv());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let f = Figures { decision_secs: vec![40, 10, 30, 20], ..Default::default() };
        assert_eq!((f.percentile(50), f.percentile(90), f.percentile(100)), (Some(20), Some(40), Some(40)));
        let one = Figures { decision_secs: vec![7], ..Default::default() };
        assert_eq!((one.percentile(50), one.percentile(90)), (Some(7), Some(7)));
    }
}
