//! One measured workload: the plexus figure, the baseline figure and their ratio.

use std::fmt::Write as _;

/// The outcome of one workload, measured against its baseline in the same run.
pub(crate) struct Report {
    /// Workload name, e.g. `local_tell`.
    pub(crate) workload: &'static str,
    /// Unit of `plexus` and `baseline`, saying which way the ratio is taken.
    pub(crate) unit: &'static str,
    /// The plexus figure.
    pub(crate) plexus: f64,
    /// The baseline figure.
    pub(crate) baseline: f64,
    /// Higher is better: plexus/baseline for rates, baseline/plexus for latencies.
    pub(crate) ratio: f64,
    /// Further figures (percentiles, bytes) as free text.
    pub(crate) notes: String,
    /// The ratio this workload should reach, if it has one.
    pub(crate) target: Option<f64>,
}

impl Report {
    /// A report without notes or target.
    pub(crate) fn new(
        workload: &'static str,
        unit: &'static str,
        plexus: f64,
        baseline: f64,
        ratio: f64,
    ) -> Self {
        Report {
            workload,
            unit,
            plexus,
            baseline,
            ratio,
            notes: String::new(),
            target: None,
        }
    }

    /// Appends a note.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        if !self.notes.is_empty() {
            self.notes.push_str("; ");
        }
        self.notes.push_str(&note.into());
        self
    }

    /// Sets the ratio this workload should reach.
    pub(crate) fn target(mut self, ratio: f64) -> Self {
        self.target = Some(ratio);
        self
    }

    fn verdict(&self) -> &'static str {
        match self.target {
            Some(target) if self.ratio >= target => "meets target",
            Some(_) => "BELOW TARGET",
            None => "",
        }
    }

    /// One JSON object on one line.
    pub(crate) fn json(&self) -> String {
        let mut line = String::new();
        let _ = write!(
            line,
            "{{\"workload\":\"{}\",\"unit\":\"{}\",\"plexus\":{:.1},\"baseline\":{:.1},\"ratio\":{:.3}",
            self.workload, self.unit, self.plexus, self.baseline, self.ratio
        );
        if let Some(target) = self.target {
            let _ = write!(line, ",\"target\":{target}");
        }
        if !self.notes.is_empty() {
            let _ = write!(line, ",\"notes\":\"{}\"", escape(&self.notes));
        }
        line.push('}');
        line
    }

    /// A human-readable block.
    pub(crate) fn text(&self) -> String {
        let mut text = format!(
            "{:<21} plexus {:>14.1}  baseline {:>14.1}  {}  ratio {:.3} {}",
            self.workload,
            self.plexus,
            self.baseline,
            self.unit,
            self.ratio,
            self.verdict()
        );
        if let Some(target) = self.target {
            let _ = write!(text, " (target {target})");
        }
        if !self.notes.is_empty() {
            let _ = write!(text, "\n{:<21} {}", "", self.notes);
        }
        text
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON line carries the fields in the documented order and escapes notes.
    #[test]
    fn json_line_has_the_documented_fields() {
        let report = Report::new("local_tell", "msg/s", 2.0, 4.0, 0.5)
            .target(0.7)
            .note("say \"hi\"");
        assert_eq!(
            report.json(),
            "{\"workload\":\"local_tell\",\"unit\":\"msg/s\",\"plexus\":2.0,\"baseline\":4.0,\
             \"ratio\":0.500,\"target\":0.7,\"notes\":\"say \\\"hi\\\"\"}"
        );
        assert!(report.text().contains("BELOW TARGET"));
    }
}
