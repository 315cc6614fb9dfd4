//! The form's questions on the terminal, for a volunteer writing down what a survivor
//! says: the testimony, then the questions the form marks for the field kit, in the
//! kit's language. Only the testimony is required; Enter skips a question.

use super::FieldkitError;
use crate::form;
use crate::i18n::{message, Lang};
use crate::record::TextField;
use std::io::{BufRead, Write};
use zeroize::Zeroizing;

/// Asks on `prompts` and reads from `answers`; the testimony ends with a line holding
/// only a dot. Answers go into `fields` under the form's field names.
pub fn ask_testimony(
    answers: impl BufRead,
    mut prompts: impl Write,
    lang: Lang,
    fields: &mut Vec<TextField>,
) -> Result<Zeroizing<String>, FieldkitError> {
    let mut lines = answers.lines();
    let mut say = |text: &str| writeln!(prompts, "{text}").map_err(FieldkitError::Terminal);
    say("What happened, in the survivor's own words. End with a line holding only a dot (.)")?;
    let mut testimony = Zeroizing::new(String::new());
    for line in lines.by_ref() {
        let line = Zeroizing::new(line.map_err(FieldkitError::Terminal)?);
        if line.trim() == "." {
            break;
        }
        testimony.push_str(&line);
        testimony.push('\n');
    }
    for asked in form::fields().filter(|f| f.fieldkit) {
        say(&format!("{} (Enter to skip)", message(lang, &format!("field-{}", asked.name), &[])))?;
        let Some(line) = lines.next() else { break };
        let line = line.map_err(FieldkitError::Terminal)?;
        if !line.trim().is_empty() {
            fields.push(TextField { name: asked.name.into(), value: line });
        }
    }
    Ok(testimony)
}
