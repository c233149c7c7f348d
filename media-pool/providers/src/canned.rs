//! The canned LLM tier: answers from the agent's FAQ by the nearest question, else a fallback
//! sentence. It never fails, so it closes LLM chains, and it is the whole brain of a FAQ agent.

use crate::llm::{FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream};
use crate::ProviderError;
use async_trait::async_trait;
use futures::StreamExt;
use golos_domain::agent::FaqEntry;
use std::collections::HashSet;

/// Below this share of common words the caller asked something else.
const MIN_SCORE: f64 = 0.34;

#[derive(Debug, Clone)]
pub struct CannedLlm {
    faq: Vec<FaqEntry>,
    fallback: String,
}

impl CannedLlm {
    pub fn new(faq: Vec<FaqEntry>, fallback: impl Into<String>) -> Self {
        Self { faq, fallback: fallback.into() }
    }

    /// With the fallback sentence in the agent's language (Russian or English).
    pub fn for_language(faq: Vec<FaqEntry>, language: &str) -> Self {
        Self::new(faq, default_fallback(language))
    }

    /// The answer to `question`: the entry with the most words in common (Dice coefficient over
    /// word sets, so short and long phrasings compare fairly), if it is close enough.
    pub fn answer(&self, question: &str) -> &str {
        let asked = words(question);
        let mut best: Option<(f64, &FaqEntry)> = None;
        for entry in &self.faq {
            for q in &entry.questions {
                let known = words(q);
                if known.is_empty() || asked.is_empty() {
                    continue;
                }
                let common = asked.intersection(&known).count() as f64;
                let score = 2.0 * common / (asked.len() + known.len()) as f64;
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, entry));
                }
            }
        }
        match best {
            Some((score, entry)) if score >= MIN_SCORE => &entry.answer,
            _ => &self.fallback,
        }
    }
}

pub fn default_fallback(language: &str) -> &'static str {
    if language.starts_with("ru") {
        "Извините, я не могу сейчас ответить на этот вопрос. Пожалуйста, перезвоните позже."
    } else {
        "Sorry, I can't answer that right now. Please call again later."
    }
}

/// Lower-case words without punctuation. Short Russian and English words carry little meaning
/// of their own ("a", "в"), so words of one letter are left out.
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(|w| w.to_lowercase().replace('ё', "е"))
        .collect()
}

#[async_trait]
impl LlmProvider for CannedLlm {
    fn name(&self) -> &'static str {
        "canned"
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, ProviderError> {
        let answer = self.answer(request.last_user_text().unwrap_or_default()).to_owned();
        let events = [Ok(LlmEvent::TextDelta(answer)), Ok(LlmEvent::End(FinishReason::Stop))];
        Ok(futures::stream::iter(events).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faq() -> Vec<FaqEntry> {
        vec![
            FaqEntry {
                questions: vec!["Когда вы открыты?".into(), "часы работы".into()],
                answer: "С девяти до девяти.".into(),
            },
            FaqEntry {
                questions: vec!["Где вы находитесь?".into(), "адрес".into()], answer: "Тверская, 1.".into()
            },
            FaqEntry { questions: vec!["what are your opening hours".into()], answer: "Nine to six.".into() },
        ]
    }

    #[test]
    fn picks_the_nearest_question() {
        let canned = CannedLlm::for_language(faq(), "ru-RU");
        assert_eq!(canned.answer("а когда вы сегодня открыты"), "С девяти до девяти.");
        assert_eq!(canned.answer("Какой у вас адрес?"), "Тверская, 1.");
        assert_eq!(canned.answer("What are your opening hours?"), "Nine to six.");
    }

    #[test]
    fn falls_back_when_nothing_is_close() {
        let canned = CannedLlm::for_language(faq(), "ru-RU");
        assert!(canned.answer("сколько стоит доставка пиццы").starts_with("Извините"));
        assert!(canned.answer("").starts_with("Извините"));
        assert!(CannedLlm::for_language(Vec::new(), "en-US").answer("hours").starts_with("Sorry"));
    }

    #[tokio::test]
    async fn streams_the_answer_to_the_last_user_message() {
        let canned = CannedLlm::for_language(faq(), "ru-RU");
        let request = LlmRequest::new(vec![
            crate::Message::User("адрес".into()),
            crate::Message::Assistant { text: "Тверская, 1.".into(), tool_calls: Vec::new() },
            crate::Message::User("когда открыты".into()),
        ]);
        let events: Vec<_> = canned.stream(&request).await.unwrap().collect().await;
        assert_eq!(
            events,
            vec![Ok(LlmEvent::TextDelta("С девяти до девяти.".into())), Ok(LlmEvent::End(FinishReason::Stop))]
        );
    }
}
