//! Full-text search over the cases, in memory, with tantivy: a word finds its other
//! grammatical forms. Russian and English through Snowball stemmers; Kazakh, which has
//! none, by its first letters: a Kazakh word's stem comes first and its suffixes after
//! (`бөлім`, `бөлімі`, `бөлімінде`), so a word finds every word that shares its first
//! four letters (each word's first four letters are indexed as a word of their own:
//! one term per query word, however many words share them); a word of one to three
//! letters finds only itself. Kazakh is also folded to the Russian keyboard's letters (ә→а, ғ→г,
//! қ→к, ң→н, ө→о, ұ/ү→у, һ→х, і→и), in the index and in the query: a survivor or a
//! reviewer on a Russian keyboard writes `болими` for `бөлімі`, and both meet.

use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer};
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{doc, Index, IndexReader, TantivyDocument, Term};

/// How many letters of a Kazakh word are matched; shorter words are matched whole.
const KAZAKH_PREFIX: usize = 4;
/// The most words one search holds (each becomes three queries), and its longest text.
pub const MAX_QUERY_WORDS: usize = 16;
pub const MAX_QUERY_BYTES: usize = 1024;
/// The most cases a search returns.
pub const MAX_RESULTS: usize = 100_000;

pub struct Search {
    index: Index,
    reader: IndexReader,
    id: Field,
    russian: Field,
    english: Field,
    kazakh: Field,
}

fn analyzer(language: Option<Language>) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser);
    match language {
        Some(language) => builder.filter(Stemmer::new(language)).build(),
        None => builder.build(),
    }
}

impl Search {
    /// An index of `cases`, each its id and all its text.
    pub fn build<'a>(
        cases: impl IntoIterator<Item = (&'a str, String)>,
    ) -> tantivy::Result<Search> {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", STRING | STORED);
        let text = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
        };
        let russian = schema.add_text_field("ru", text("ru"));
        let english = schema.add_text_field("en", text("en"));
        let kazakh = schema.add_text_field("kk", text("kk"));
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register("ru", analyzer(Some(Language::Russian)));
        index.tokenizers().register("en", analyzer(Some(Language::English)));
        index.tokenizers().register("kk", analyzer(None));
        let mut writer = index.writer(50_000_000)?;
        for (case, text) in cases {
            writer.add_document(doc!(
                id => case,
                russian => text.as_str(),
                english => text.as_str(),
                kazakh => kazakh_stems(&text),
            ))?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        Ok(Search { index, reader, id, russian, english, kazakh })
    }

    /// The ids of the cases holding every word of `query`, in any of its forms, best
    /// first. An empty query finds nothing (the caller lists everything).
    pub fn find(&self, query: &str) -> tantivy::Result<Vec<String>> {
        let refuse = |why: String| Err(tantivy::TantivyError::InvalidArgument(why));
        if query.len() > MAX_QUERY_BYTES {
            return refuse(format!("a search may be at most {MAX_QUERY_BYTES} bytes long"));
        }
        let words: Vec<&str> =
            query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        if words.len() > MAX_QUERY_WORDS {
            return refuse(format!("at most {MAX_QUERY_WORDS} words in one search"));
        }
        let searcher = self.reader.searcher();
        let mut every_word: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in words {
            let mut any_form: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in [self.russian, self.english] {
                let mut tokens = self.index.tokenizer_for_field(field)?;
                let mut stream = tokens.token_stream(word);
                while let Some(token) = stream.next() {
                    let term = Term::from_field_text(field, &token.text);
                    any_form.push((
                        Occur::Should,
                        Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                    ));
                }
            }
            let stem = kazakh_stems(word);
            let term = Term::from_field_text(self.kazakh, &stem);
            any_form
                .push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
            every_word.push((Occur::Must, Box::new(BooleanQuery::new(any_form))));
        }
        if every_word.is_empty() {
            return Ok(Vec::new());
        }
        let found = searcher.search(
            &BooleanQuery::new(every_word),
            &tantivy::collector::TopDocs::with_limit(MAX_RESULTS).order_by_score(),
        )?;
        let mut ids = Vec::with_capacity(found.len());
        for (_, address) in found {
            let document: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = document.get_first(self.id).and_then(|v| v.as_str()) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }
}

/// Each word of `text` as the Kazakh field holds it: folded, then its first letters.
fn kazakh_stems(text: &str) -> String {
    let folded = fold_kazakh(text);
    let stems = folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty());
    stems.map(|w| w.chars().take(KAZAKH_PREFIX).collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// Lower case, with Kazakh's own letters (and ё) as the Russian keyboard writes them.
pub fn fold_kazakh(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ә' => 'а',
            'ғ' => 'г',
            'қ' => 'к',
            'ң' => 'н',
            'ө' => 'о',
            'ұ' | 'ү' => 'у',
            'һ' => 'х',
            'і' => 'и',
            'ё' => 'е',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_finds_its_other_forms_in_russian_english_and_kazakh() {
        let cases = [
            ("ru", "Меня избивали в подвале акимата три дня".to_string()),
            ("en", "They beat him with batons at the police station".to_string()),
            ("kk", "Полиция бөлімінде мені ұрып-соқты".to_string()),
            ("none", "Nothing of the kind".to_string()),
        ];
        let search = Search::build(cases.iter().map(|(id, text)| (*id, text.clone()))).unwrap();
        assert_eq!(search.find("избивают подвалом").unwrap(), ["ru"]);
        assert_eq!(search.find("beating").unwrap(), ["en"]);
        assert_eq!(search.find("stations").unwrap(), ["en"]);
        assert_eq!(search.find("бөлімі").unwrap(), ["kk"]);
        // From a Russian keyboard, and a short word matched whole, never by prefix.
        assert_eq!(search.find("болими").unwrap(), ["kk"]);
        assert_eq!(search.find("Урып").unwrap(), ["kk"]);
        assert!(search.find("у").unwrap().is_empty());
        assert!(search.find(&"ж".repeat(MAX_QUERY_BYTES)).is_err());
        assert!(search.find("").unwrap().is_empty());
        assert!(search.find("pizza").unwrap().is_empty());
        assert!(search.find(&"слово ".repeat(MAX_QUERY_WORDS + 1)).is_err());
    }

    #[test]
    fn thousands_of_words_sharing_a_beginning_neither_block_nor_cut_a_search() {
        // A hostile testimony with 5,000 words that begin alike.
        let words: Vec<String> = (0..5_000).map(|n| format!("поли{n}")).collect();
        let cases = [
            ("many", words.join(" ")),
            ("real", "Полицейские увезли его в ИВС".to_string()),
            ("kk", "Полиция бөлімінде".to_string()),
        ];
        let search = Search::build(cases.iter().map(|(id, text)| (*id, text.clone()))).unwrap();
        let mut found = search.find("полиция").unwrap();
        found.sort();
        assert_eq!(found, ["kk", "many", "real"]);
        assert_eq!(search.find("ивс").unwrap(), ["real"]);
    }
}
