//! The testimony form's questions, as the Istanbul Protocol orders them: shared by the
//! survivor's page (the same field names), and by the reviewer's `testimony.txt` and
//! `report.html`, which show every answer under the form's headings in the survivor's
//! language and in the reviewer's.

use crate::envelope::TextField;
use crate::i18n::{message, Lang};

/// A section of the form: its heading's catalogue key, and its fields in order.
pub struct Section {
    pub heading: &'static str,
    pub fields: &'static [&'static str],
}

pub const SECTIONS: &[Section] = &[
    Section {
        heading: "section-when",
        fields: &["when", "city", "place", "place_detail", "duration"],
    },
    Section {
        heading: "section-who",
        fields: &["perpetrators_count", "uniforms", "agency", "perpetrators", "what_they_said"],
    },
    Section { heading: "section-acts", fields: &["acts", "acts_detail"] },
    Section {
        heading: "section-injuries",
        fields: &["injuries_then", "injuries_now", "medical_care", "medical_documents"],
    },
    Section {
        heading: "section-detention",
        fields: &[
            "detained_at",
            "detention_recorded_at",
            "lawyer_access",
            "family_informed",
            "charges",
        ],
    },
    Section { heading: "section-witnesses", fields: &["witnesses"] },
    Section {
        heading: "section-consent",
        fields: &["consent_readers", "contact_ok", "contact_how", "help_wanted"],
    },
];

/// Choice fields: the catalogue prefix of their options' labels.
fn option_prefix(field: &str) -> Option<&'static str> {
    match field {
        "place" => Some("place-"),
        "acts" => Some("act-"),
        "consent_readers" => Some("readers-"),
        "contact_ok" => Some("contact-"),
        "help_wanted" => Some("help-"),
        _ => None,
    }
}

/// One answered section, ready to show.
pub struct Answered {
    pub heading: String,
    /// (question, answer); a question answered several times (ticked boxes) once.
    pub answers: Vec<(String, String)>,
}

/// Text in the survivor's language, then the reviewer's when they differ.
fn both(survivor: Option<Lang>, reviewer: Lang, key: &str, fallback: &str) -> String {
    let text = |lang| {
        let text = message(lang, key, &[]);
        if text == key {
            fallback.to_string()
        } else {
            text
        }
    };
    match survivor {
        Some(lang) if lang != reviewer => format!("{} / {}", text(lang), text(reviewer)),
        _ => text(reviewer),
    }
}

/// The manifest's answers grouped under the form's headings; fields the form does not
/// know (the API, older forms) come last under "other answers", in the order given.
pub fn answers(fields: &[TextField], survivor_language: &str, reviewer: Lang) -> Vec<Answered> {
    let survivor = Lang::from_code(survivor_language);
    let value = |field: &TextField| match option_prefix(&field.name) {
        Some(prefix) => {
            let key = format!("{prefix}{}", field.value);
            both(survivor, reviewer, &key, &field.value)
        }
        None => field.value.trim_end().to_string(),
    };
    let question = |name: &str| both(survivor, reviewer, &format!("field-{name}"), name);
    let mut out = Vec::new();
    for section in SECTIONS {
        let mut answers = Vec::new();
        for name in section.fields {
            let given: Vec<String> = fields.iter().filter(|f| f.name == *name).map(value).collect();
            if !given.is_empty() {
                answers.push((question(name), given.join("; ")));
            }
        }
        if !answers.is_empty() {
            out.push(Answered { heading: both(survivor, reviewer, section.heading, ""), answers });
        }
    }
    let known = |name: &str| SECTIONS.iter().any(|s| s.fields.contains(&name));
    let other: Vec<(String, String)> = fields
        .iter()
        .filter(|f| !known(&f.name))
        .map(|f| (f.name.replace(['_', '-'], " "), f.value.trim_end().to_string()))
        .collect();
    if !other.is_empty() {
        out.push(Answered { heading: "Other answers".into(), answers: other });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> TextField {
        TextField { name: name.into(), value: value.into() }
    }

    #[test]
    fn answers_are_grouped_and_shown_in_both_languages() {
        let fields = [
            field("acts", "beating"),
            field("city", "Алматы"),
            field("acts", "burns"),
            field("consent_readers", "lawyers"),
            field("where", "free text from an older form"),
        ];
        let shown = answers(&fields, "ru", Lang::En);
        assert_eq!(shown[0].heading, "Когда и где / When and where");
        assert_eq!(shown[0].answers[0].1, "Алматы");
        assert_eq!(shown[1].answers[0].1, "Избиение / Beating; Ожоги / Burns");
        assert_eq!(shown[2].answers[0].1, "Коалиция и адвокаты, которых она вам подберёт / The coalition, and lawyers it chooses for you");
        assert_eq!(shown[3].heading, "Other answers");
        // Same language: once.
        assert_eq!(answers(&fields, "en", Lang::En)[0].heading, "When and where");
        // Every field of the form has a question in every language.
        for section in SECTIONS {
            for name in section.fields {
                for lang in Lang::ALL {
                    let key = format!("field-{name}");
                    assert_ne!(message(lang, &key, &[]), key, "{} {key}", lang.code());
                }
            }
        }
    }
}
