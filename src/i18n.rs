//! The survivor's languages: Kazakh, Russian and English, from Project Fluent catalogues
//! (`locales/*.ftl`, compiled in). Pages ask for messages by key; a missing key shows
//! the key itself (and a unit test makes sure none is missing in any language).

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Kk,
    Ru,
    En,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Kk, Lang::Ru, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::Kk => "kk",
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The first of our languages in an `Accept-Language` header, by the client's
    /// weights; Russian when none matches (the language most read where this is for).
    /// The header is read here and never logged.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.unwrap_or("").split(',').take(32) {
            let mut parts = item.trim().split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let primary = tag.split('-').next().unwrap_or("");
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(primary) {
                if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                    best = Some((weight, lang));
                }
            }
        }
        best.map_or(Lang::Ru, |(_, l)| l)
    }

    fn source(self) -> &'static str {
        match self {
            Lang::Kk => include_str!("../locales/kk.ftl"),
            Lang::Ru => include_str!("../locales/ru.ftl"),
            Lang::En => include_str!("../locales/en.ftl"),
        }
    }
}

struct Catalog {
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog {
        bundles: Lang::ALL
            .into_iter()
            .map(|lang| {
                let resource = FluentResource::try_new(lang.source().to_string())
                    .unwrap_or_else(|(resource, _)| resource);
                let id: unic_langid::LanguageIdentifier =
                    lang.code().parse().expect("our language codes are valid");
                let mut bundle = FluentBundle::new_concurrent(vec![id]);
                // Plain text into HTML: no invisible bidi marks around placeholders.
                bundle.set_use_isolating(false);
                let _ = bundle.add_resource(resource);
                (lang, bundle)
            })
            .collect(),
    })
}

/// Formats message `key` in `lang` with `args`.
pub fn message(lang: Lang, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    let Some((_, bundle)) = catalog().bundles.iter().find(|(l, _)| *l == lang) else {
        return key.to_string();
    };
    let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
        return key.to_string();
    };
    let mut fluent_args = FluentArgs::new();
    for (name, value) in args {
        fluent_args.set(*name, value.clone());
    }
    let mut errors = Vec::new();
    bundle
        .format_pattern(pattern, (!args.is_empty()).then_some(&fluent_args), &mut errors)
        .into_owned()
}

/// What templates hold: the page's language, with short calls for messages.
#[derive(Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    pub fn new(lang: Lang) -> Tr {
        Tr { lang }
    }

    pub fn code(&self) -> &'static str {
        self.lang.code()
    }

    /// A message without placeholders.
    pub fn t(&self, key: &str) -> String {
        message(self.lang, key, &[])
    }

    /// A message with one number (plurals follow the language's rules). Takes the
    /// number by value or by reference, as templates hand it over either way.
    pub fn n(&self, key: &str, name: &str, number: impl Number) -> String {
        message(self.lang, key, &[(name, FluentValue::from(number.get()))])
    }

    /// A message with one text.
    pub fn s(&self, key: &str, name: &str, text: &str) -> String {
        message(self.lang, key, &[(name, FluentValue::from(text.to_string()))])
    }

    /// Every language, for the switch on each page.
    pub fn languages(&self) -> Vec<(&'static str, String, bool)> {
        Lang::ALL
            .into_iter()
            .map(|l| (l.code(), message(l, "lang-name", &[]), l == self.lang))
            .collect()
    }
}

/// A count from a template, however many references deep.
pub trait Number {
    fn get(&self) -> usize;
}

impl Number for usize {
    fn get(&self) -> usize {
        *self
    }
}

impl<T: Number + ?Sized> Number for &T {
    fn get(&self) -> usize {
        (**self).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_syntax::ast;
    use std::collections::{BTreeMap, BTreeSet};

    /// Message id -> the variables it uses, from a catalogue's syntax tree.
    fn keys(lang: Lang) -> BTreeMap<String, BTreeSet<String>> {
        let resource = fluent_syntax::parser::parse(lang.source())
            .unwrap_or_else(|(_, errors)| panic!("{}: {errors:?}", lang.code()));
        let mut out = BTreeMap::new();
        for entry in resource.body {
            if let ast::Entry::Message(message) = entry {
                let mut vars = BTreeSet::new();
                if let Some(pattern) = &message.value {
                    pattern_vars(pattern, &mut vars);
                }
                out.insert(message.id.name.to_string(), vars);
            }
        }
        out
    }

    fn pattern_vars(pattern: &ast::Pattern<&str>, vars: &mut BTreeSet<String>) {
        for element in &pattern.elements {
            if let ast::PatternElement::Placeable { expression } = element {
                expression_vars(expression, vars);
            }
        }
    }

    fn expression_vars(expression: &ast::Expression<&str>, vars: &mut BTreeSet<String>) {
        match expression {
            ast::Expression::Select { selector, variants } => {
                inline_vars(selector, vars);
                for variant in variants {
                    pattern_vars(&variant.value, vars);
                }
            }
            ast::Expression::Inline(inline) => inline_vars(inline, vars),
        }
    }

    fn inline_vars(inline: &ast::InlineExpression<&str>, vars: &mut BTreeSet<String>) {
        match inline {
            ast::InlineExpression::VariableReference { id } => {
                vars.insert(id.name.to_string());
            }
            ast::InlineExpression::Placeable { expression } => expression_vars(expression, vars),
            _ => {}
        }
    }

    #[test]
    fn every_language_has_every_key_with_the_same_placeholders() {
        let english = keys(Lang::En);
        assert!(english.len() > 100, "the English catalogue parsed: {}", english.len());
        for lang in [Lang::Kk, Lang::Ru] {
            let other = keys(lang);
            let missing: Vec<_> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: missing {missing:?}, extra {extra:?}",
                lang.code()
            );
            for (key, vars) in &english {
                assert_eq!(&other[key], vars, "{}: placeholders of {key}", lang.code());
            }
        }
    }

    #[test]
    fn messages_format_with_plurals_and_no_bidi_marks() {
        let ru = Tr::new(Lang::Ru);
        assert!(ru.n("receipt-stored", "files", 2).contains("2 файла"));
        assert!(ru.n("receipt-stored", "files", 5).contains("5 файлов"));
        assert!(ru.n("receipt-stored", "files", 1).contains("1 файл "));
        assert!(!Tr::new(Lang::En).n("index-intro", "holders", 3).contains('\u{2068}'));
        assert_eq!(Tr::new(Lang::Kk).t("no-such-key"), "no-such-key");
    }

    #[test]
    fn accept_language_picks_the_best_of_ours() {
        assert_eq!(Lang::from_accept_language(Some("kk-KZ,ru;q=0.8")), Lang::Kk);
        assert_eq!(Lang::from_accept_language(Some("de,en;q=0.7,ru;q=0.9")), Lang::Ru);
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.5")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Ru);
        assert_eq!(Lang::from_accept_language(None), Lang::Ru);
    }
}
