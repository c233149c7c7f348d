//! Sentence chunking of an LLM token stream for TTS.
//!
//! Policy (documented in docs/pipeline.md):
//! - A chunk ends at a sentence terminator: `.` `!` `?` `…` and the full-width `。` `！` `？`,
//!   or a line break. Closing quotes and brackets (`"` `'` `”` `’` `»` `)` `]`) and further
//!   terminators right after it stay with the sentence (`?!`, `...`, `.»`) when they are
//!   already in the buffer. `;` and `:` are not terminators: they split clauses, and the
//!   length rule below already keeps long clauses from starving TTS.
//! - An ASCII terminator needs whitespace after it, or the end of the text seen so far, so
//!   `golos.ai`, `3.5` and `e.g.x` are not split; the full-width ones need nothing after them.
//! - No lookahead: a terminator at the very end of the buffer ends the chunk at once (so the
//!   WORKLOAD's token `Sure.` goes to TTS when it arrives). The one exception is a `.` right
//!   after a digit (`at 9.` vs `9.5`): that waits for the next token or the end of the
//!   response.
//! - Without a terminator, once the pending text reaches `max_chars` characters (40) it is cut
//!   at its last whitespace, so the chunk holds only complete words.
//! - Whitespace: chunks are trimmed, and whitespace-only chunks are not emitted. So the chunks
//!   with all whitespace removed concatenate to the input with all whitespace removed, and
//!   every chunk is the exact slice `text[start..start + chunk.len()]` of the response text.

/// One chunk: its text (trimmed) and its byte offset in the whole response text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef<'a> {
    pub text: &'a str,
    pub start: usize,
}

/// Incremental chunker of one response. Reuses its buffer, so steady-state tokens do not
/// allocate.
#[derive(Debug, Clone)]
pub struct Chunker {
    buf: String,
    /// Byte offset of `buf[0]` in the response text.
    base: usize,
    /// Bytes of `buf` already scanned for terminators without a boundary.
    scanned: usize,
    max_chars: usize,
}

const CLOSERS: [char; 7] = ['"', '\'', '”', '’', '»', ')', ']'];

const fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '\n')
}

const fn is_full_width(c: char) -> bool {
    matches!(c, '…' | '。' | '！' | '？' | '\n')
}

impl Chunker {
    pub fn new(max_chars: usize) -> Self {
        Self { buf: String::with_capacity(128), base: 0, scanned: 0, max_chars: max_chars.max(1) }
    }

    /// Starts a new response, keeping the buffer's capacity.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.base = 0;
        self.scanned = 0;
    }

    /// Text received but not yet emitted.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// Appends a token and emits every chunk now complete, in order.
    pub fn push(&mut self, token: &str, mut emit: impl FnMut(ChunkRef<'_>)) {
        self.buf.push_str(token);
        while let Some(end) = self.next_boundary() {
            self.emit_until(end, &mut emit);
        }
    }

    /// End of the response: emits what is left.
    pub fn finish(&mut self, mut emit: impl FnMut(ChunkRef<'_>)) {
        let end = self.buf.len();
        self.emit_until(end, &mut emit);
    }

    fn emit_until(&mut self, end: usize, emit: &mut impl FnMut(ChunkRef<'_>)) {
        let piece = &self.buf[..end];
        let trimmed_start = piece.len() - piece.trim_start().len();
        let text = piece.trim();
        if !text.is_empty() {
            emit(ChunkRef { text, start: self.base + trimmed_start });
        }
        self.buf.drain(..end);
        self.base += end;
        self.scanned = 0;
    }

    /// Byte index just past the next chunk in `buf`, if one is complete.
    fn next_boundary(&mut self) -> Option<usize> {
        let buf = self.buf.as_str();
        let mut chars = buf[self.scanned..].char_indices().map(|(i, c)| (i + self.scanned, c)).peekable();
        let mut previous: Option<char> = buf[..self.scanned].chars().next_back();
        while let Some((i, c)) = chars.next() {
            if is_terminator(c) {
                // Swallow a run of terminators and closing marks.
                let mut end = i + c.len_utf8();
                let mut full_width = is_full_width(c);
                while let Some(&(j, d)) = chars.peek() {
                    if is_terminator(d) || CLOSERS.contains(&d) {
                        full_width |= is_full_width(d);
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                match buf[end..].chars().next() {
                    None => {
                        if c == '.' && end == i + 1 && previous.is_some_and(|p| p.is_ascii_digit()) {
                            // `9.` may be `9.5`: wait for the next token, rescanning from here.
                            self.scanned = i;
                            return None;
                        }
                        return Some(end);
                    }
                    Some(next) if next.is_whitespace() || full_width => return Some(end),
                    Some(_) => {}
                }
                previous = buf[..end].chars().next_back();
                continue;
            }
            previous = Some(c);
        }
        self.scanned = buf.len();
        let text = buf.trim_start();
        if text.chars().count() >= self.max_chars {
            let offset = buf.len() - text.len();
            // The last whitespace that has a word before it: everything up to it is complete.
            if let Some(cut) = text.rfind(char::is_whitespace).filter(|&cut| !text[..cut].trim().is_empty()) {
                return Some(offset + cut);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunks_of(tokens: &[&str], max_chars: usize) -> Vec<(String, usize)> {
        let mut chunker = Chunker::new(max_chars);
        let mut out = Vec::new();
        for token in tokens {
            chunker.push(token, |c| out.push((c.text.to_owned(), c.start)));
        }
        chunker.finish(|c| out.push((c.text.to_owned(), c.start)));
        out
    }

    fn texts(tokens: &[&str], max_chars: usize) -> Vec<String> {
        chunks_of(tokens, max_chars).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn the_first_sentence_goes_out_with_its_own_token() {
        let mut chunker = Chunker::new(40);
        let mut out = Vec::new();
        chunker.push("Sure.", |c| out.push(c.text.to_owned()));
        assert_eq!(out, ["Sure."]);
    }

    #[test]
    fn workload_tokens() {
        let tokens = crate::workload::WORKLOAD_TOKENS;
        assert_eq!(
            texts(&tokens, 40),
            [
                "Sure.",
                "We're open from nine to six, Monday",
                "through Friday.",
                "On Saturdays we open at ten and close",
                "at four.",
                "We're closed on Sundays.",
                "Anything else I can help with?"
            ]
        );
        // With the length rule out of the way, one chunk per sentence (the WORKLOAD's split).
        assert_eq!(
            texts(&tokens, usize::MAX),
            [
                "Sure.",
                "We're open from nine to six, Monday through Friday.",
                "On Saturdays we open at ten and close at four.",
                "We're closed on Sundays.",
                "Anything else I can help with?"
            ]
        );
    }

    #[test]
    fn russian_and_unicode_terminators() {
        assert_eq!(texts(&["Здравствуйте! Чем", " могу помочь?"], 40), ["Здравствуйте!", "Чем могу помочь?"]);
        assert_eq!(texts(&["Секунду…", "Готово"], 40), ["Секунду…", "Готово"]);
        assert_eq!(texts(&["好的。我们", "九点开门。"], 40), ["好的。", "我们九点开门。"]);
        assert_eq!(texts(&["Правда?! Да", "."], 40), ["Правда?!", "Да."]);
        assert_eq!(texts(&["Он сказал «нет.» Потом"], 40), ["Он сказал «нет.»", "Потом"]);
    }

    #[test]
    fn no_split_inside_numbers_or_names() {
        assert_eq!(
            texts(&["It costs 3", ".", "5 roubles", " at golos.ai now."], 40),
            ["It costs 3.5 roubles at golos.ai now."]
        );
        assert_eq!(texts(&["Open at 9", ".", " Bye."], 40), ["Open at 9.", "Bye."]);
        // A digit and a dot at the end of the response are flushed by finish().
        assert_eq!(texts(&["Call 112."], 40), ["Call 112."]);
    }

    #[test]
    fn long_text_is_cut_at_a_word_boundary_without_waiting() {
        let mut chunker = Chunker::new(10);
        let mut out = Vec::new();
        chunker.push("alpha beta", |c| out.push(c.text.to_owned()));
        assert_eq!(out, ["alpha"]);
        assert_eq!(chunker.pending(), " beta");
        // A single word longer than the limit waits for its end.
        assert_eq!(
            texts(&["Supercalifragilistic", "expialidocious ok"], 10),
            ["Supercalifragilisticexpialidocious", "ok"]
        );
    }

    #[test]
    fn offsets_point_into_the_response_text() {
        let tokens = ["  Hello", " there.", " How are", " you?  "];
        let text: String = tokens.concat();
        for (chunk, start) in chunks_of(&tokens, 40) {
            assert_eq!(&text[start..start + chunk.len()], chunk);
        }
    }

    fn token_strategy() -> impl Strategy<Value = Vec<String>> {
        let piece = prop_oneof![
            8 => "[a-zа-я0-9]{1,8}",
            3 => Just(" ".to_owned()),
            1 => Just("\n".to_owned()),
            2 => proptest::sample::select(vec![".", "!", "?", "…", "。", "？", "?!", "...", "»", ",", "3.5", "e.g."]).prop_map(str::to_owned),
        ];
        proptest::collection::vec(proptest::collection::vec(piece, 1..4).prop_map(|p| p.concat()), 0..60)
    }

    proptest! {
        #[test]
        fn chunking_never_loses_or_reorders_text(tokens in token_strategy(), max_chars in 1usize..80) {
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let text: String = tokens.concat();
            let chunks = chunks_of(&refs, max_chars);
            let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            let joined: String = chunks.iter().map(|(t, _)| t.as_str()).collect();
            prop_assert_eq!(strip(&joined), strip(&text));
            let mut previous_end = 0;
            for (chunk, start) in &chunks {
                prop_assert!(!chunk.is_empty());
                prop_assert_eq!(chunk.trim(), chunk.as_str());
                prop_assert!(*start >= previous_end);
                prop_assert_eq!(&text[*start..*start + chunk.len()], chunk.as_str());
                previous_end = start + chunk.len();
            }
        }
    }
}
