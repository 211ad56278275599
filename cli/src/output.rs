//! The one printer every command writes through: aligned tables for people, JSON lines for
//! scripts. Commands build `serde_json` objects; the printer decides how they look.

use std::io::{IsTerminal, Write};

use serde_json::Value;

use crate::args::OutputFormat;

impl OutputFormat {
    /// A table on a terminal, JSON lines when stdout is piped or redirected.
    pub(crate) fn auto() -> OutputFormat {
        if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        }
    }
}

/// A column of a table: the object's key and the header shown.
pub(crate) type Column = (&'static str, &'static str);

/// Prints results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    format: OutputFormat,
}

/// How a JSON value appears in a table cell.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_owned(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Aligns `rows` under `headers` (the last column is not padded).
pub(crate) fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let mut out = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                out.push_str(&c);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().map(|h| h.to_string()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(&mut r.iter().cloned()));
        out.push('\n');
    }
    out
}

impl Printer {
    /// A printer for `format`.
    pub(crate) fn new(format: OutputFormat) -> Printer {
        Printer { format }
    }

    /// Whether output is for people.
    pub(crate) fn is_table(&self) -> bool {
        self.format == OutputFormat::Table
    }

    /// A list of objects: a table with `columns`, or one JSON line each (every key).
    pub(crate) fn rows(&self, columns: &[Column], rows: &[Value]) {
        match self.format {
            OutputFormat::Json => {
                for r in rows {
                    self.json(r);
                }
            }
            OutputFormat::Table => {
                let headers: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| columns.iter().map(|(k, _)| cell(&r[*k])).collect())
                    .collect();
                print!("{}", format_table(&headers, &cells));
            }
        }
    }

    /// One object: `field: value` lines, or one JSON line.
    pub(crate) fn object(&self, fields: &[Column], v: &Value) {
        match self.format {
            OutputFormat::Json => self.json(v),
            OutputFormat::Table => {
                let width = fields.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
                for (k, h) in fields {
                    println!(
                        "{:<width$}  {}",
                        format!("{h}:"),
                        cell(&v[*k]),
                        width = width + 1
                    );
                }
            }
        }
    }

    /// A progress or result message: `text` for people, `v` for scripts.
    pub(crate) fn event(&self, text: &str, v: &Value) {
        match self.format {
            OutputFormat::Json => self.json(v),
            OutputFormat::Table => println!("{text}"),
        }
    }

    /// One JSON line.
    pub(crate) fn json(&self, v: &Value) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = writeln!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_cells_render() {
        let t = format_table(
            &["ID", "STATE"],
            &[
                vec!["shardId-000000000000".into(), "open".into()],
                vec!["s1".into(), "closed".into()],
            ],
        );
        assert_eq!(
            t,
            "ID                    STATE\nshardId-000000000000  open\ns1                    closed\n"
        );
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a,b");
        assert_eq!(cell(&serde_json::json!(3)), "3");
    }
}
