//! Name normalisation (`docs/identity.md`): what makes two spellings of a
//! name the same name.
//!
//! A name is decomposed (Unicode NFKD) and its marks dropped (`É` → `E`),
//! the ligatures no decomposition splits are spelt out (`Œ` → `OE`, `Æ` →
//! `AE`, `ß` → `SS`), letters are upper-cased, and anything that is not a
//! letter or a digit (hyphens, apostrophes, spaces, dots) separates words.
//! A surname then drops its particles (the words `DE`, `DU`, `DES` and `D`
//! standing alone) and is written without separators: `de La Fontaine`,
//! `La-Fontaine` and `LAFONTAINE` are one name, and so are `N'Diaye` and
//! `NDIAYE`; but `du Bois` (`BOIS`) is not `Dubois`, as the civil registers
//! have it. First names keep their words, sorted, so that the
//! order in which they are given does not matter.

use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};
use zeroize::Zeroize;

/// `raw` decomposed without its marks, ligatures spelt out, upper-cased,
/// anything not a letter or a digit turned into a space.
fn flatten(raw: &str) -> String {
    if raw.is_ascii() {
        // NFKD leaves ASCII as it is and ASCII has no mark: the same result
        // as below, byte for byte, without the decomposition's per-character
        // work (most names of the register are ASCII).
        return raw
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b.to_ascii_uppercase())
                } else {
                    ' '
                }
            })
            .collect();
    }
    flatten_unicode(raw)
}

fn flatten_unicode(raw: &str) -> String {
    // Room enough that the string rarely grows: a growth leaves a copy
    // behind that no one wipes.
    let mut flat = String::with_capacity(4 * raw.len());
    for c in raw.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'œ' | 'Œ' => flat.push_str("OE"),
            'æ' | 'Æ' => flat.push_str("AE"),
            'ß' => flat.push_str("SS"),
            c if c.is_alphanumeric() => flat.extend(c.to_uppercase()),
            _ => flat.push(' '),
        }
    }
    flat
}

fn words(flat: &str) -> impl Iterator<Item = &str> + Clone {
    flat.split(' ').filter(|w| !w.is_empty())
}

/// A surname's key: its words without particles, joined. A name made of
/// particles only (`DE`) keeps them.
pub fn surname(raw: &str) -> String {
    let mut flat = flatten(raw);
    let particle = |w: &&str| matches!(*w, "DE" | "DU" | "DES" | "D");
    let only_particles = words(&flat).all(|w| particle(&w));
    let mut out = String::with_capacity(flat.len());
    for w in words(&flat).filter(|w| only_particles || !particle(w)) {
        out.push_str(w);
    }
    flat.zeroize();
    cut(&mut out);
    out
}

/// Keys are kept to [`KEY_MAX`] bytes, cut on a character's boundary, so
/// that both register back-ends store and compare the same keys.
pub const KEY_MAX: usize = 255;

fn cut(key: &mut String) {
    if key.len() <= KEY_MAX {
        return;
    }
    let mut end = KEY_MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    // Blank the tail in place first: truncating keeps its bytes in the buffer.
    let blank = " ".repeat(key.len() - end);
    key.replace_range(end.., &blank);
    key.truncate(end);
}

/// First names' key: their words, sorted, joined by one space
/// (`Jean-Pierre Marie` and `Marie Jean Pierre` are the same).
pub fn first_names(raw: &str) -> String {
    let mut flat = flatten(raw);
    let mut ws: Vec<&str> = words(&flat).collect();
    ws.sort_unstable();
    let mut out = String::with_capacity(flat.len());
    for (i, w) in ws.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
    drop(ws);
    flat.zeroize();
    cut(&mut out);
    out
}

/// The Damerau–Levenshtein distance (adjacent transpositions counted once)
/// between two keys, or `None` when it is above `max`. Keys are short (a
/// name), so the quadratic table is a few hundred cells; written here
/// because the tolerance needs the bound, and the early stop that goes
/// with it, which the string-distance crates do not offer.
pub fn distance(a: &[u8], b: &[u8], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let w = b.len() + 1;
    // Names fit the table on the stack; a longer key gets one on the heap.
    let mut stack = [0usize; 33 * 33];
    let mut heap = Vec::new();
    let cells = (a.len() + 1) * w;
    let d: &mut [usize] = if cells <= stack.len() {
        &mut stack[..cells]
    } else {
        heap.resize(cells, 0);
        &mut heap
    };
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * w] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
    }
    let v = d[a.len() * w + b.len()];
    (v <= max).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_cut_to_255_bytes_on_a_character_boundary() {
        // Two-byte letters no decomposition turns into ASCII.
        let long = "Ж".repeat(200);
        let key = surname(&long);
        assert!(key.len() <= KEY_MAX && key.len() > KEY_MAX - 2);
        assert!(key.chars().all(|c| c == 'Ж'));
        assert_eq!(first_names(&"Z".repeat(300)).len(), KEY_MAX);
        assert_eq!(surname("Dupont"), "DUPONT");
    }

    #[test]
    fn surnames_lose_case_accents_separators_and_particles() {
        for (a, b) in [
            ("de La Fontaine", "LAFONTAINE"),
            ("La-Fontaine", "lafontaine"),
            ("N'Diaye", "NDIAYE"),
            ("Lefèvre", "LEFEVRE"),
            ("D’Arcy", "d'ARCY"),
            ("Le Gall", "LEGALL"),
            ("Martin-Dupont", "martin dupont"),
            ("Œuvray", "OEUVRAY"),
            ("Strauß", "STRAUSS"),
            ("du Bois", "BOIS"),
            ("des Prés", "PRES"),
            ("ÉTIENNE", "Etienne"),
        ] {
            assert_eq!(surname(a), surname(b), "{a} / {b}");
        }
        assert_eq!(surname("de La Fontaine"), "LAFONTAINE");
        assert_eq!(surname("De"), "DE");
        assert_eq!(surname("La Salle"), "LASALLE");
        assert_ne!(surname("du Bois"), surname("Dubois"));
        assert_ne!(surname("Martin"), surname("Martins"));
    }

    #[test]
    fn ascii_is_flattened_as_unicode_is() {
        let every: String = (0u8..128).map(char::from).collect();
        assert_eq!(flatten(&every), flatten_unicode(&every));
        for raw in ["d'Artagnan", "Le-Gall", "o'BRIEN jr.", "x\ty", "", "  "] {
            assert_eq!(flatten(raw), flatten_unicode(raw), "{raw}");
        }
    }

    #[test]
    fn first_names_are_words_in_any_order() {
        assert_eq!(first_names("Jean-Pierre Marie"), "JEAN MARIE PIERRE");
        assert_eq!(
            first_names("Marie  Jean Pierre"),
            first_names("jean-pierre marie")
        );
        assert_eq!(first_names("Hélène"), "HELENE");
    }

    #[test]
    fn distance_counts_edits_and_transpositions_with_a_bound() {
        assert_eq!(distance(b"MARTIN", b"MARTIN", 2), Some(0));
        assert_eq!(distance(b"MARTIN", b"MARTEN", 2), Some(1));
        assert_eq!(distance(b"MARTIN", b"MRATIN", 2), Some(1));
        assert_eq!(distance(b"MARTIN", b"MARTINE", 2), Some(1));
        assert_eq!(distance(b"MARTIN", b"DUPONT", 2), None);
        assert_eq!(distance(b"A", b"ABCD", 2), None);
        assert_eq!(distance(b"", b"AB", 2), Some(2));
    }
}
