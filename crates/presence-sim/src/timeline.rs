//! A picture of a run: one lane per node over virtual time, with messages,
//! client operations, replica events, faults and the verdict, as a
//! self-contained SVG. People would rather look than read a thousand lines.

use std::fmt::Write;

use crate::svg::escape;
use crate::trace::TraceEvent;
use crate::world::RunReport;

const WIDTH: f64 = 1400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const LANE: f64 = 48.0;
/// At most this many message lines are drawn (evenly sampled).
const MAX_MESSAGES: usize = 4_000;

fn message_colour(kind: &str) -> &'static str {
    match kind {
        "heartbeat" => "#9aa5b1",
        "transfer_request" => "#3b82f6",
        "transfer_ack" => "#1d4ed8",
        _ => "#dc2626",
    }
}

/// The timeline of a run whose trace was kept.
pub fn svg(report: &RunReport) -> String {
    let events = report.trace.events();
    let canvas = Canvas::new(report, events);
    let mut out = String::new();
    canvas.lanes(&mut out, report);
    canvas.outages(&mut out, events);
    canvas.messages(&mut out, events);
    canvas.marks(&mut out, events, report.verdict.passed());
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{:.1}" fill="#4b5563">grey: heartbeat  blue: transfer  green dot: client op  marks: up (green), down (amber), permdown/reincarnation (purple)  dashed red: fault  pink: node not running</text></svg>"##,
        canvas.height - 15.0
    );
    out
}

/// The drawing's geometry: one lane per node, virtual time left to right.
struct Canvas {
    nodes: usize,
    end_ms: f64,
    height: f64,
}

impl Canvas {
    fn new(report: &RunReport, events: &[TraceEvent]) -> Self {
        let nodes = events
            .iter()
            .filter_map(|event| match event {
                TraceEvent::Deliver { from, to, .. } | TraceEvent::Drop { from, to, .. } => {
                    Some((*from).max(*to))
                }
                TraceEvent::Op { node, .. }
                | TraceEvent::Diff { node, .. }
                | TraceEvent::Replica { node, .. } => Some(*node),
                TraceEvent::Fault { nodes, .. } => nodes.iter().max().copied(),
                TraceEvent::Heal { .. } | TraceEvent::End { .. } => None,
            })
            .max()
            .map_or(1, |max| max + 1);
        Self {
            nodes,
            end_ms: report.virtual_ms.max(1) as f64,
            height: TOP + LANE * nodes as f64 + 60.0,
        }
    }

    fn x(&self, t: u64) -> f64 {
        LEFT + (t as f64 / self.end_ms) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, node: usize) -> f64 {
        TOP + LANE * node as f64 + LANE / 2.0
    }

    /// The header, the title and a line per node.
    fn lanes(&self, out: &mut String, report: &RunReport) {
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="monospace" font-size="11">"#,
            self.height
        );
        let _ = write!(
            out,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">{} seed {} - {} ms virtual - {}</text>"#,
            escape(&report.scenario),
            report.seed,
            report.virtual_ms,
            escape(&report.verdict.to_string())
        );
        for node in 0..self.nodes {
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#d1d5db"/><text x="10" y="{2}">node {node}</text>"##,
                self.y(node),
                WIDTH - RIGHT,
                self.y(node) + 4.0
            );
        }
    }

    /// Shades the time a node is not running: crashed, shut down or paused.
    fn outages(&self, out: &mut String, events: &[TraceEvent]) {
        let mut out_since: Vec<Option<u64>> = vec![None; self.nodes];
        for event in events {
            match event {
                TraceEvent::Fault {
                    t,
                    what,
                    nodes: named,
                } => {
                    let stops = ["crash", "shutdown", "pause"]
                        .iter()
                        .any(|verb| what.starts_with(verb));
                    let starts = ["restart", "resume"].iter().any(|verb| what.starts_with(verb));
                    for &node in named.iter().filter(|&&node| node < self.nodes) {
                        if stops && out_since[node].is_none() {
                            out_since[node] = Some(*t);
                        } else if starts {
                            if let Some(since) = out_since[node].take() {
                                self.shade(out, node, since, *t);
                            }
                        }
                    }
                }
                TraceEvent::Heal { t } => {
                    for (node, since) in out_since.iter_mut().enumerate() {
                        if let Some(since) = since.take() {
                            self.shade(out, node, since, *t);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn shade(&self, out: &mut String, node: usize, from: u64, to: u64) {
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fee2e2"/>"##,
            self.x(from),
            self.y(node) - LANE / 2.0 + 2.0,
            (self.x(to) - self.x(from)).max(1.0),
            LANE - 4.0
        );
    }

    /// A line per delivered message, at most [`MAX_MESSAGES`] (evenly
    /// sampled).
    fn messages(&self, out: &mut String, events: &[TraceEvent]) {
        let deliveries: Vec<&TraceEvent> = events
            .iter()
            .filter(|e| matches!(e, TraceEvent::Deliver { .. }))
            .collect();
        let stride = deliveries.len().div_ceil(MAX_MESSAGES).max(1);
        for event in deliveries.iter().step_by(stride) {
            if let TraceEvent::Deliver {
                t,
                sent,
                from,
                to,
                msg,
            } = event
            {
                let _ = write!(
                    out,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="0.6" opacity="0.6"/>"#,
                    self.x(*sent),
                    self.y(*from),
                    self.x(*t),
                    self.y(*to),
                    message_colour(msg)
                );
            }
        }
    }

    /// Client operations, replica events, faults, the heal and, for a run
    /// that failed, where it ended.
    fn marks(&self, out: &mut String, events: &[TraceEvent], passed: bool) {
        let bottom = self.height - 40.0;
        for event in events {
            match event {
                TraceEvent::Op { t, node, .. } => {
                    let _ = write!(
                        out,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="1.8" fill="#059669"/>"##,
                        self.x(*t),
                        self.y(*node) - 8.0
                    );
                }
                TraceEvent::Replica { t, node, event } => {
                    let colour = if event.starts_with("up") {
                        "#16a34a"
                    } else if event.starts_with("down") {
                        "#f59e0b"
                    } else {
                        "#7c3aed"
                    };
                    let _ = write!(
                        out,
                        r#"<rect x="{:.1}" y="{:.1}" width="3" height="10" fill="{colour}"><title>{}</title></rect>"#,
                        self.x(*t) - 1.5,
                        self.y(*node) + 4.0,
                        escape(event)
                    );
                }
                TraceEvent::Fault { t, what, .. } => {
                    let _ = write!(
                        out,
                        r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ef4444" stroke-dasharray="4 3"/><text x="{3:.1}" y="{4}" fill="#b91c1c">{5}</text>"##,
                        self.x(*t),
                        TOP - 10.0,
                        bottom,
                        self.x(*t) + 3.0,
                        TOP - 14.0,
                        escape(what)
                    );
                }
                TraceEvent::Heal { t } => self.heal(out, *t),
                TraceEvent::End { t, .. } if !passed => {
                    let _ = write!(
                        out,
                        r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#dc2626" stroke-width="3"/>"##,
                        self.x(*t),
                        TOP - 10.0,
                        bottom
                    );
                }
                _ => {}
            }
        }
    }

    fn heal(&self, out: &mut String, t: u64) {
        // Labels near the right edge read leftwards, so they stay inside.
        let (label_x, anchor) = if self.x(t) > WIDTH - 200.0 {
            (self.x(t) - 3.0, "end")
        } else {
            (self.x(t) + 3.0, "start")
        };
        let _ = write!(
            out,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#16a34a" stroke-width="2"/><text x="{3:.1}" y="{4}" fill="#15803d" text-anchor="{anchor}">heal: liveness phase</text>"##,
            self.x(t),
            TOP - 10.0,
            self.height - 40.0,
            label_x,
            self.height - 44.0
        );
    }
}
