//! Codenames: what a survivor writes down to come back to their case.
//!
//! A codename is 5 words of 3 syllables each. A syllable is one of 13 consonants
//! (b d f g k l m n r s t v z) followed by one of 5 vowels (a e i o u): 65 syllables,
//! so 15 syllables carry 15 × log2(65) ≈ 90.3 bits. Every letter is written and said
//! the same way in Russian and Kazakh Cyrillic (б д ф г к л м н р с т в з / а е и о у),
//! so a survivor may write it down in either alphabet; normalization maps Cyrillic back.
//! Latin p, c, h, x and y are left out because their Cyrillic look-alikes (р, с, н, х, у)
//! sound different.

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const CONSONANTS: [char; 13] = ['b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'r', 's', 't', 'v', 'z'];
const VOWELS: [char; 5] = ['a', 'e', 'i', 'o', 'u'];
const SYLLABLES: usize = CONSONANTS.len() * VOWELS.len();
pub const WORDS: usize = 5;
pub const SYLLABLES_PER_WORD: usize = 3;

/// Bits of entropy in a generated codename.
pub fn entropy_bits() -> f64 {
    (WORDS * SYLLABLES_PER_WORD) as f64 * (SYLLABLES as f64).log2()
}

/// A codename as shown to the survivor: lowercase words separated by spaces.
pub struct Codename(Zeroizing<String>);

impl Codename {
    pub fn generate(rng: &SystemRandom) -> Codename {
        let mut text = Zeroizing::new(String::with_capacity(WORDS * 7));
        for word in 0..WORDS {
            if word > 0 {
                text.push(' ');
            }
            for _ in 0..SYLLABLES_PER_WORD {
                let s = uniform_index(rng, SYLLABLES);
                text.push(CONSONANTS[s / VOWELS.len()]);
                text.push(VOWELS[s % VOWELS.len()]);
            }
        }
        Codename(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form every lookup and derivation uses.
    pub fn normalized(&self) -> Zeroizing<String> {
        normalize(&self.0)
    }
}

/// Folds what a survivor typed into the canonical form: lowercase Latin letters only.
/// Spaces, hyphens and punctuation are dropped; Cyrillic (Russian and Kazakh) letters are
/// mapped to the Latin letter with the same sound; п, which a hand copying Latin "n"
/// produces, maps to n.
pub fn normalize(input: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(input.len()));
    for c in input.chars().flat_map(char::to_lowercase) {
        let latin = match c {
            'a'..='z' => c,
            'а' | 'ә' => 'a',
            'б' => 'b',
            'д' => 'd',
            'е' | 'ё' | 'э' => 'e',
            'ф' => 'f',
            'г' | 'ғ' => 'g',
            'и' | 'й' | 'і' | 'ы' => 'i',
            'к' | 'қ' => 'k',
            'л' => 'l',
            'м' => 'm',
            'н' | 'ң' | 'п' => 'n',
            'о' | 'ө' => 'o',
            'р' => 'r',
            'с' => 's',
            'т' => 't',
            'у' | 'ү' | 'ұ' => 'u',
            'в' => 'v',
            'з' => 'z',
            _ => continue,
        };
        out.push(latin);
    }
    out
}

/// Whether a normalized codename has the shape every generated one has: 15 syllables of
/// one consonant and one vowel from the lists above. Anything else cannot open a case,
/// and is refused before the costly derivation (`keys::CodenameKey`).
pub fn is_well_formed(normalized: &str) -> bool {
    let bytes = normalized.as_bytes();
    bytes.len() == 2 * WORDS * SYLLABLES_PER_WORD
        && bytes
            .chunks(2)
            .all(|s| CONSONANTS.contains(&(s[0] as char)) && VOWELS.contains(&(s[1] as char)))
}

/// A uniformly random index below `n` (n ≤ 256), by rejection sampling on random bytes.
fn uniform_index(rng: &SystemRandom, n: usize) -> usize {
    let limit = 256 - 256 % n;
    loop {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte).expect("the system random source works");
        if (byte[0] as usize) < limit {
            return byte[0] as usize % n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codename_has_at_least_90_bits_and_the_announced_shape() {
        assert!(entropy_bits() >= 90.0, "{}", entropy_bits());
        let c = Codename::generate(&SystemRandom::new());
        let words: Vec<&str> = c.as_str().split(' ').collect();
        assert_eq!(words.len(), WORDS);
        assert!(words.iter().all(|w| w.len() == 2 * SYLLABLES_PER_WORD));
        assert_eq!(c.normalized().len(), 2 * WORDS * SYLLABLES_PER_WORD);
    }

    #[test]
    fn cyrillic_spacing_and_case_slips_normalize_to_the_same_codename() {
        let written = "bafoki mudero salive tokuma genira";
        let n = normalize(written);
        assert_eq!(&*normalize("BAFOKI-MUDERO salive  tokuma, genira"), &*n);
        assert_eq!(&*normalize("бафоки мудеро саливе токума генира"), &*n);
        assert_eq!(&*normalize("БАФОКИ МУДЕРО САЛИВЕ ТОКУМА ГЕНИРА"), &*n);
        assert_eq!(&*normalize("бафокі мүдеро саливе тоқума геніра"), &*n);
        assert_ne!(&*normalize("bafoki mudero salive tokuma genire"), &*n);
    }

    #[test]
    fn only_the_shape_of_a_generated_codename_is_well_formed() {
        let c = Codename::generate(&SystemRandom::new());
        assert!(is_well_formed(&c.normalized()));
        assert!(is_well_formed(&normalize("бафоки мудеро саливе токума генира")));
        assert!(!is_well_formed(&normalize("bafoki mudero salive tokuma")));
        assert!(!is_well_formed(&normalize("bafoki mudero salive tokuma genirap")));
        assert!(!is_well_formed(&normalize("bafoki mudero salive tokuma geniaa")));
        assert!(!is_well_formed(""));
    }

    #[test]
    fn syllables_are_roughly_uniform() {
        let rng = SystemRandom::new();
        let mut counts = [0u32; SYLLABLES];
        for _ in 0..65_000 {
            counts[uniform_index(&rng, SYLLABLES)] += 1;
        }
        // Expected 1000 each; plain modulo of a byte would give the last 4 about 760.
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    }
}
