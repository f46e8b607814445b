//! Console output of one call, as Convex log lines.

/// Appended to a log line whose message was cut.
pub const TRUNCATED_LINE_SUFFIX: &str = " (truncated due to length)";

/// The log lines of one call: `"[LEVEL] message"`, at most `max_lines` of them (the last one
/// spent on an overflow notice, as Convex does), each message cut to `max_message_bytes`
/// including the truncation suffix.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    lines: Vec<String>,
    max_lines: usize,
    max_message_bytes: usize,
}

impl LogBuffer {
    pub(crate) fn new(max_lines: usize, max_message_bytes: usize) -> Self {
        assert!(
            max_lines >= 1,
            "a log buffer holds at least the overflow notice"
        );
        assert!(max_message_bytes > TRUNCATED_LINE_SUFFIX.len());
        LogBuffer {
            lines: Vec::new(),
            max_lines,
            max_message_bytes,
        }
    }

    pub(crate) fn push(&mut self, level: &str, message: &str) {
        let reserved = self.max_lines - 1;
        if self.lines.len() < reserved {
            let line = if message.len() <= self.max_message_bytes {
                format!("[{level}] {message}")
            } else {
                let keep = floor_char_boundary(
                    message,
                    self.max_message_bytes - TRUNCATED_LINE_SUFFIX.len(),
                );
                format!("[{level}] {}{TRUNCATED_LINE_SUFFIX}", &message[..keep])
            };
            self.lines.push(line);
        } else if self.lines.len() == reserved {
            self.lines.push(format!(
                "[ERROR] Log overflow (maximum {}). Remaining log lines omitted.",
                self.max_lines
            ));
        }
    }

    pub(crate) fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// The largest index ≤ `index` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    let mut i = index;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let mut log = LogBuffer::new(10, 40);
        log.push("LOG", &"é".repeat(30));
        let lines = log.into_lines();
        let message = lines[0].strip_prefix("[LOG] ").unwrap_or_default();
        assert!(message.ends_with(TRUNCATED_LINE_SUFFIX));
        assert!(message.len() <= 40);
        assert_eq!(message, format!("{}{TRUNCATED_LINE_SUFFIX}", "é".repeat(7)));
    }

    #[test]
    fn short_messages_are_kept_whole() {
        let mut log = LogBuffer::new(10, 40);
        log.push("WARN", "'a' 1");
        assert_eq!(log.into_lines(), vec!["[WARN] 'a' 1".to_string()]);
    }

    #[test]
    fn overflow_keeps_one_notice() {
        let mut log = LogBuffer::new(3, 100);
        for i in 0..10 {
            log.push("LOG", &i.to_string());
        }
        assert_eq!(
            log.into_lines(),
            vec![
                "[LOG] 0".to_string(),
                "[LOG] 1".to_string(),
                "[ERROR] Log overflow (maximum 3). Remaining log lines omitted.".to_string(),
            ]
        );
    }
}
