//! Untrusted text made safe for error messages and log lines.

/// Renders untrusted input for an error message: control characters escaped,
/// cut to 200 characters so a huge value cannot bloat an answer or a log line.
pub fn printable(s: &str) -> String {
    // The common case, copied at once: short, and nothing `escape_debug` changes.
    if s.len() <= 200
        && s.bytes()
            .all(|c| (b' '..=b'~').contains(&c) && !matches!(c, b'\\' | b'\'' | b'"'))
    {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_copies_plain_text_and_escapes_the_rest() {
        let slow = |s: &str| {
            let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
            if s.chars().count() > 200 {
                out.push('…');
            }
            out
        };
        let long = "x".repeat(201);
        for s in [
            "",
            "/clusters/blue/assume-role-for-pod-identity",
            "a b~c",
            "a\\b",
            "it's",
            "\"q\"",
            "\n",
            "\u{7f}",
            "é",
            &long,
        ] {
            assert_eq!(printable(s), slow(s), "{s:?}");
        }
        assert_eq!(printable(&"y".repeat(200)), "y".repeat(200));
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(300)).chars().count(), 201);
    }
}
