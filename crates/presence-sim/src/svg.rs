//! What every SVG the project draws shares (the run timeline here, the
//! benchmark report's charts in presence-cli).

/// `text` escaped for SVG (XML) text and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
