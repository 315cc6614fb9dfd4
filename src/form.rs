//! The testimony form, defined once: its sections, questions, kinds of answer, choices
//! and which answers are required, as the Istanbul Protocol orders them. The survivor's
//! page is drawn from it, the intake's consent check and the field kit's questions read
//! it, and the reviewer's `testimony.txt` and `report.html` show every answer under its
//! headings in the survivor's language and in the reviewer's.

use crate::i18n::{message, Lang};
use crate::record::TextField;

/// What kind of answer a field takes.
pub enum Kind {
    /// One line of text.
    Line,
    /// A few lines of text.
    Text,
    /// One of `choices` (radio buttons); `prefix` + choice is its label's catalogue key
    /// and its element id.
    One { prefix: &'static str, choices: &'static [&'static str] },
    /// Any of `choices` (tick boxes), one manifest field per ticked box.
    Many { prefix: &'static str, choices: &'static [&'static str] },
}

/// A question of the form: its manifest field name (and `field-<name>` catalogue key).
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Nothing is stored from the web form without an answer to it.
    pub required: bool,
    /// The field kit asks it on the terminal (the few questions a volunteer can ask
    /// quickly; the rest can be given with `--field name=value`).
    pub fieldkit: bool,
}

impl Field {
    const fn line(name: &'static str) -> Field {
        Field { name, kind: Kind::Line, required: false, fieldkit: false }
    }

    const fn text(name: &'static str) -> Field {
        Field { name, kind: Kind::Text, required: false, fieldkit: false }
    }

    const fn asked_by_the_kit(self) -> Field {
        Field { fieldkit: true, ..self }
    }

    pub fn is_line(&self) -> bool {
        matches!(self.kind, Kind::Line)
    }

    pub fn is_text(&self) -> bool {
        matches!(self.kind, Kind::Text)
    }

    /// Radio buttons rather than tick boxes.
    pub fn is_single_choice(&self) -> bool {
        matches!(self.kind, Kind::One { .. })
    }

    /// The choices of a choice field (empty for text).
    pub fn choices(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::One { choices, .. } | Kind::Many { choices, .. } => choices,
            Kind::Line | Kind::Text => &[],
        }
    }

    /// The catalogue prefix of a choice field's labels (`place-`, `act-`...).
    pub fn prefix(&self) -> &'static str {
        match self.kind {
            Kind::One { prefix, .. } | Kind::Many { prefix, .. } => prefix,
            Kind::Line | Kind::Text => "",
        }
    }

    /// The element id of a single choice's question: `place-label`.
    pub fn label_id(&self) -> String {
        format!("{}label", self.prefix())
    }

    /// Whether `value` is one of the field's own choices.
    pub fn allows(&self, value: &str) -> bool {
        self.choices().contains(&value)
    }
}

/// A section of the form: its heading's catalogue key, and its fields in order.
pub struct Section {
    pub heading: &'static str,
    pub fields: &'static [Field],
}

impl Section {
    /// A section with a required question is marked required; the survivor may skip
    /// any other.
    pub fn required(&self) -> bool {
        self.fields.iter().any(|f| f.required)
    }
}

/// The testimony itself: the one answer every submission needs.
pub const TESTIMONY_FIELD: &str = "testimony";
/// Who the survivor allows to read the case.
pub const CONSENT_FIELD: &str = "consent_readers";

/// The acts the form asks about (manifest field `acts`, one value per ticked box).
pub const ACTS: &[&str] = &[
    "beating",
    "beating_objects",
    "electric_shocks",
    "burns",
    "suffocation",
    "stress_positions",
    "sexual_violence",
    "threats",
    "denied_medical_care",
    "denied_food_water_sleep",
    "forced_confession",
    "taken_from_hospital",
    "other",
];

/// The form after the testimony, as the Istanbul Protocol orders it. The page shows
/// the sections that may be skipped, then the evidence, then the required ones.
pub const SECTIONS: &[Section] = &[
    Section {
        heading: "section-when",
        fields: &[
            Field::line("when").asked_by_the_kit(),
            Field::line("city").asked_by_the_kit(),
            Field {
                name: "place",
                kind: Kind::One {
                    prefix: "place-",
                    choices: &["street", "hospital", "police", "detention", "other"],
                },
                required: false,
                fieldkit: false,
            },
            Field::line("place_detail").asked_by_the_kit(),
            Field::line("duration"),
        ],
    },
    Section {
        heading: "section-who",
        fields: &[
            Field::line("perpetrators_count"),
            Field::line("uniforms"),
            Field::line("agency"),
            Field::text("perpetrators"),
            Field::text("what_they_said"),
        ],
    },
    Section {
        heading: "section-acts",
        fields: &[
            Field {
                name: "acts",
                kind: Kind::Many { prefix: "act-", choices: ACTS },
                required: false,
                fieldkit: false,
            },
            Field::text("acts_detail").asked_by_the_kit(),
        ],
    },
    Section {
        heading: "section-injuries",
        fields: &[
            Field::text("injuries_then"),
            Field::text("injuries_now").asked_by_the_kit(),
            Field::text("medical_care"),
            Field::text("medical_documents"),
        ],
    },
    Section {
        heading: "section-detention",
        fields: &[
            Field::line("detained_at"),
            Field::line("detention_recorded_at"),
            Field::line("lawyer_access"),
            Field::line("family_informed"),
            Field::line("charges"),
        ],
    },
    Section { heading: "section-witnesses", fields: &[Field::text("witnesses")] },
    Section {
        heading: "section-consent",
        fields: &[
            Field {
                name: CONSENT_FIELD,
                kind: Kind::One {
                    prefix: "readers-",
                    choices: &["coalition", "lawyers", "investigators"],
                },
                required: true,
                fieldkit: false,
            },
            Field {
                name: "contact_ok",
                kind: Kind::One { prefix: "contact-", choices: &["yes", "no"] },
                required: false,
                fieldkit: false,
            },
            Field::line("contact_how").asked_by_the_kit(),
            Field {
                name: "help_wanted",
                kind: Kind::Many {
                    prefix: "help-",
                    choices: &["legal", "medical", "psychological"],
                },
                required: false,
                fieldkit: false,
            },
        ],
    },
];

/// The question named `name`, if the form has it.
pub fn field(name: &str) -> Option<&'static Field> {
    SECTIONS.iter().flat_map(|s| s.fields).find(|f| f.name == name)
}

/// Every field of the form, in order.
pub fn fields() -> impl Iterator<Item = &'static Field> {
    SECTIONS.iter().flat_map(|s| s.fields)
}

/// The first required question the survivor did not answer (with one of its choices,
/// for a choice).
pub fn missing_required(answers: &[TextField]) -> Option<&'static str> {
    let answered = |field: &Field| {
        answers
            .iter()
            .find(|a| a.name == field.name)
            .is_some_and(|a| field.choices().is_empty() || field.allows(&a.value))
    };
    fields().filter(|f| f.required).find(|f| !answered(f)).map(|f| f.name)
}

/// Whether the consent the survivor gave lets a lawyer read the case: "lawyers", or
/// "investigators" (which includes lawyers).
pub fn consent_lets_lawyers_read(consent: &str) -> bool {
    matches!(consent, "lawyers" | "investigators")
}

/// Choice fields: the catalogue prefix of their options' labels.
fn option_prefix(name: &str) -> Option<&'static str> {
    field(name).map(Field::prefix).filter(|p| !p.is_empty())
}

/// A choice's label in `lang` (`acts`, `beating` → "Beating"); the value itself for a
/// field without choices or a choice the catalogue lacks.
pub fn choice_label(field: &str, value: &str, lang: Lang) -> String {
    match option_prefix(field) {
        Some(prefix) => both(None, lang, &format!("{prefix}{value}"), value),
        None => value.to_string(),
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
        for asked in section.fields {
            let given: Vec<String> =
                fields.iter().filter(|f| f.name == asked.name).map(value).collect();
            if !given.is_empty() {
                answers.push((question(asked.name), given.join("; ")));
            }
        }
        if !answers.is_empty() {
            out.push(Answered { heading: both(survivor, reviewer, section.heading, ""), answers });
        }
    }
    let known = |name: &str| field(name).is_some();
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
        for asked in super::fields() {
            for lang in Lang::ALL {
                let key = format!("field-{}", asked.name);
                assert_ne!(message(lang, &key, &[]), key, "{} {key}", lang.code());
                for choice in asked.choices() {
                    let key = format!("{}{choice}", asked.prefix());
                    assert_ne!(message(lang, &key, &[]), key, "{} {key}", lang.code());
                }
            }
        }
    }
}
