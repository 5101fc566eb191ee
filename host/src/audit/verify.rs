//! Verifying an audit log: follow every chain and report the first record
//! that was edited, deleted, reordered or inserted, and, given a head
//! checkpoint, records cut from the end or a whole chain removed.

use super::GENESIS;
use crate::hash::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// The last record of one chain: keep it where the log's writer cannot
/// rewrite it, and [`verify_log`] detects records cut from the end, and a
/// chain removed altogether.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The chain id (`writer` in checkpoints of logs from before chains
    /// spanned processes).
    #[serde(alias = "writer")]
    pub chain: String,
    /// Its last sequence number.
    pub seq: u64,
    /// The sha256 of that record's line.
    pub sha256: String,
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditReport {
    /// Complete records checked.
    pub records: u64,
    /// The head of every chain, in order of first appearance.
    pub heads: Vec<AuditHead>,
    /// The 1-based line number of an unterminated last line: a write that
    /// was interrupted. It is not counted or checked, and not fatal.
    pub torn_line: Option<usize>,
    /// Lines inside the log that are the start of a record cut short (a
    /// write interrupted by a crash, ended with a newline by the next
    /// writer), which the chain goes around: not counted, not fatal.
    pub interrupted: Vec<usize>,
}

/// What was done to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TamperKind {
    /// A record's bytes changed.
    Edited,
    /// Records are missing.
    Deleted,
    /// Records are out of order.
    Reordered,
    /// A record that no writer wrote in that place.
    Inserted,
    /// Records are missing from the end (seen against a head checkpoint).
    Truncated,
    /// A line is not a record at all.
    Malformed,
}

impl TamperKind {
    /// `edited`, `deleted`, `reordered`, `inserted`, `truncated` or
    /// `malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TamperKind::Edited => "edited",
            TamperKind::Deleted => "deleted",
            TamperKind::Reordered => "reordered",
            TamperKind::Inserted => "inserted",
            TamperKind::Truncated => "truncated",
            TamperKind::Malformed => "malformed",
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditTamper {
    /// What kind.
    pub kind: TamperKind,
    /// The 1-based line number it concerns.
    pub line: usize,
    /// What exactly, in words.
    pub message: String,
}

impl fmt::Display for AuditTamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: {}",
            self.line,
            self.kind.as_str(),
            self.message
        )
    }
}

impl std::error::Error for AuditTamper {}

struct Rec {
    line: usize,
    writer: String,
    seq: u64,
    prev: String,
    hash: String,
}

fn parse(line: usize, bytes: &[u8]) -> Result<Rec, AuditTamper> {
    let malformed = |message: String| AuditTamper {
        kind: TamperKind::Malformed,
        line,
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a JSON record ({e})")))?;
    // Logs from before chains spanned processes chain by `writer`.
    let writer = value["chain"].as_str().or_else(|| value["writer"].as_str());
    let seq = value["seq"].as_u64();
    let prev = value["prev"].as_str();
    match (writer, seq, prev) {
        (Some(writer), Some(seq), Some(prev)) if seq > 0 => Ok(Rec {
            line,
            writer: writer.to_string(),
            seq,
            prev: prev.to_string(),
            hash: sha256_hex(bytes),
        }),
        _ => Err(malformed(
            "missing or invalid `chain`, `seq` or `prev`".into(),
        )),
    }
}

/// Checks every writer's chain in `log` (the bytes of a JSON Lines audit
/// file), then each `heads` checkpoint.
///
/// # Errors
///
/// The first problem, in file order.
pub fn verify_log(log: &[u8], heads: &[AuditHead]) -> Result<AuditReport, AuditTamper> {
    let mut lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
    // After a final newline `split` yields an empty piece; anything else
    // there is a torn (unterminated) last line.
    let tail = lines.pop().unwrap_or_default();
    let torn_line = (!tail.is_empty()).then_some(lines.len() + 1);

    let mut records = Vec::with_capacity(lines.len());
    let mut interrupted = Vec::new();
    for (i, bytes) in lines.iter().enumerate() {
        let record = parse(i + 1, bytes);
        // A record cut short: not JSON, but the start of a record. The
        // chain must still go around it (checked below like any gap).
        if record.is_err()
            && bytes.starts_with(br#"{"chain":"#)
            && serde_json::from_slice::<serde_json::Value>(bytes).is_err()
        {
            interrupted.push(i + 1);
            continue;
        }
        records.push(record);
    }
    // Where each (writer, seq) appears, for telling reorderings from
    // deletions and insertions.
    let mut positions: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    for (i, rec) in records.iter().enumerate() {
        if let Ok(rec) = rec {
            positions
                .entry((rec.writer.as_str(), rec.seq))
                .or_default()
                .push(i);
        }
    }
    let next_of_writer = |from: usize, writer: &str| {
        records[from + 1..]
            .iter()
            .flatten()
            .find(|r| r.writer == writer)
    };

    let line_of = |at: usize| records[at].as_ref().map_or(at + 1, |r| r.line);
    // chain -> index of its last record.
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let rec = rec.as_ref().map_err(Clone::clone)?;
        let tamper = |kind, message| AuditTamper {
            kind,
            line: rec.line,
            message,
        };
        let who = format!("chain `{}` seq {}", rec.writer, rec.seq);
        let (expected, prev_hash, prev_line) = match last.get(rec.writer.as_str()) {
            Some(&j) => {
                let Ok(p) = &records[j] else { unreachable!() };
                (p.seq + 1, p.hash.as_str(), Some(p.line))
            }
            None => (1, GENESIS, None),
        };
        if rec.seq > expected {
            let later = (expected..rec.seq).find_map(|s| {
                positions
                    .get(&(rec.writer.as_str(), s))
                    .and_then(|at| at.iter().find(|&&at| at > i))
                    .map(|&at| (s, line_of(at)))
            });
            return Err(match later {
                Some((s, at)) => tamper(
                    TamperKind::Reordered,
                    format!("{who} comes before seq {s} (line {at})"),
                ),
                None => tamper(
                    TamperKind::Deleted,
                    format!(
                        "records {expected}..{} of chain `{}` are missing before this line",
                        rec.seq - 1,
                        rec.writer
                    ),
                ),
            });
        }
        if rec.seq < expected {
            let first = line_of(positions[&(rec.writer.as_str(), rec.seq)][0]);
            return Err(tamper(
                TamperKind::Inserted,
                format!(
                    "{who} appears again (first at line {first}): a record was inserted or replayed"
                ),
            ));
        }
        if rec.prev != prev_hash {
            let next = next_of_writer(i, &rec.writer);
            return Err(match (next, prev_line) {
                (Some(n), _) if n.seq == rec.seq => tamper(
                    TamperKind::Inserted,
                    format!(
                        "{who} does not chain to its predecessor, and line {} has the same seq",
                        n.line
                    ),
                ),
                (Some(n), Some(p)) if n.prev == rec.hash => AuditTamper {
                    kind: TamperKind::Edited,
                    line: p,
                    message: format!(
                        "the record was changed: line {} (chain `{}` seq {}) no longer chains to it",
                        rec.line, rec.writer, rec.seq
                    ),
                },
                (Some(_), _) | (None, None) => tamper(
                    TamperKind::Edited,
                    format!(
                        "{who} was changed: its `prev` does not match the previous record, nor does the next record chain to it"
                    ),
                ),
                (None, Some(p)) => AuditTamper {
                    kind: TamperKind::Edited,
                    line: p,
                    message: format!(
                        "line {} (chain `{}` seq {}) does not chain to it: one of the two was changed",
                        rec.line, rec.writer, rec.seq
                    ),
                },
            });
        }
        if last.insert(&rec.writer, i).is_none() {
            order.push(&rec.writer);
        }
    }

    let end = lines.len() + 1;
    for head in heads {
        let Some(&j) = last.get(head.chain.as_str()) else {
            return Err(AuditTamper {
                kind: TamperKind::Truncated,
                line: end,
                message: format!(
                    "chain `{}` is missing: the head checkpoint says it has {} records",
                    head.chain, head.seq
                ),
            });
        };
        let Ok(tip) = &records[j] else { unreachable!() };
        if tip.seq < head.seq {
            return Err(AuditTamper {
                kind: TamperKind::Truncated,
                line: end,
                message: format!(
                    "chain `{}` ends at seq {}, but the head checkpoint says seq {}: records were cut from the end",
                    head.chain, tip.seq, head.seq
                ),
            });
        }
        let at = positions[&(head.chain.as_str(), head.seq)][0];
        let Ok(rec) = &records[at] else {
            unreachable!()
        };
        if rec.hash != head.sha256 {
            return Err(AuditTamper {
                kind: TamperKind::Edited,
                line: rec.line,
                message: format!(
                    "chain `{}` seq {} does not match the head checkpoint's sha256",
                    head.chain, head.seq
                ),
            });
        }
    }

    let heads = order
        .iter()
        .map(|w| {
            let Ok(rec) = &records[last[w]] else {
                unreachable!()
            };
            AuditHead {
                chain: rec.writer.clone(),
                seq: rec.seq,
                sha256: rec.hash.clone(),
            }
        })
        .collect();
    Ok(AuditReport {
        records: records.len() as u64,
        heads,
        torn_line,
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` records per writer, interleaved.
    fn log(writers: &[&str], n: u64) -> Vec<String> {
        let mut prev: HashMap<&str, String> = HashMap::new();
        let mut lines = Vec::new();
        for seq in 1..=n {
            for w in writers {
                let p = prev.get(w).cloned().unwrap_or_else(|| GENESIS.to_string());
                let line = format!(
                    r#"{{"writer":"{w}","seq":{seq},"prev":"{p}","event":"denied","reason":"r{seq}"}}"#
                );
                prev.insert(w, sha256_hex(line.as_bytes()));
                lines.push(line);
            }
        }
        lines
    }

    fn check(lines: &[String]) -> Result<AuditReport, AuditTamper> {
        verify_log((lines.join("\n") + "\n").as_bytes(), &[])
    }

    #[test]
    fn intact_log_with_two_writers_verifies() {
        let report = check(&log(&["a", "b"], 3)).expect("intact");
        assert_eq!(report.records, 6);
        assert_eq!(report.heads.len(), 2);
        assert_eq!(report.heads[1].seq, 3);
        assert_eq!(verify_log(b"", &[]).expect("empty is intact").records, 0);
    }

    #[test]
    fn edited_record_is_reported_at_its_line() {
        let mut lines = log(&["a"], 5);
        lines[2] = lines[2].replace("r3", "r9");
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Edited, 3), "{err}");
    }

    #[test]
    fn deleted_record_is_reported() {
        let mut lines = log(&["a", "b"], 4);
        lines.remove(4); // writer a, seq 3
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Deleted, 6), "{err}");
    }

    #[test]
    fn reordered_records_are_reported() {
        let mut lines = log(&["a"], 5);
        lines.swap(1, 3);
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Reordered, 2), "{err}");
    }

    #[test]
    fn inserted_record_is_reported() {
        let mut lines = log(&["a"], 4);
        let forged = format!(
            r#"{{"writer":"a","seq":3,"prev":"{}","event":"x"}}"#,
            "1".repeat(64)
        );
        lines.insert(2, forged);
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Inserted, 3), "{err}");
        // A replayed copy of an earlier record.
        let mut lines = log(&["a"], 4);
        lines.push(lines[1].clone());
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Inserted, 5), "{err}");
    }

    #[test]
    fn truncated_tail_is_caught_only_with_a_head_checkpoint() {
        let lines = log(&["a"], 5);
        let head = check(&lines).expect("intact").heads[0].clone();
        let cut = &lines[..3];
        assert!(check(cut).is_ok(), "without a head a cut tail looks intact");
        let err = verify_log(
            (cut.join("\n") + "\n").as_bytes(),
            std::slice::from_ref(&head),
        )
        .expect_err("truncated");
        assert_eq!(err.kind, TamperKind::Truncated, "{err}");
        // The last record edited: only the head sees it.
        let mut edited = lines.clone();
        edited[4] = edited[4].replace("r5", "r6");
        let err = verify_log((edited.join("\n") + "\n").as_bytes(), &[head]).expect_err("edited");
        assert_eq!((err.kind, err.line), (TamperKind::Edited, 5), "{err}");
    }

    #[test]
    fn torn_last_line_is_reported_not_fatal() {
        let lines = log(&["a"], 3);
        let text = lines.join("\n") + "\n" + &lines[0][..10];
        let report = verify_log(text.as_bytes(), &[]).expect("intact apart from the torn line");
        assert_eq!(report.records, 3);
        assert_eq!(report.torn_line, Some(4));
    }

    #[test]
    fn garbage_line_is_malformed() {
        let mut lines = log(&["a"], 3);
        lines.insert(1, "not json".into());
        let err = check(&lines).expect_err("tampered");
        assert_eq!((err.kind, err.line), (TamperKind::Malformed, 2), "{err}");
    }
}
