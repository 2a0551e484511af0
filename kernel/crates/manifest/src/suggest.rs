//! "Did you mean …?" — shared by key, table and plugin-name errors, and public so
//! the kernel's plugin catalog suggests names the same way.

/// Candidates close to `name`, best first. Empty when nothing is close enough to
/// be a plausible typo (a wrong suggestion is worse than none).
pub fn suggest<'a, I>(name: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let jw = strsim::jaro_winkler(name, c);
            let edits = strsim::damerau_levenshtein(name, c);
            // Short names tolerate one edit, longer ones a third of their length.
            let close_edits = edits <= (name.chars().count() / 3).max(1);
            (close_edits || jw >= 0.9).then_some((jw, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut out: Vec<String> = Vec::new();
    for (_, c) in scored {
        if !out.iter().any(|o| o == c) {
            out.push(c.to_owned());
        }
    }
    out
}

/// `did you mean `x`?`, when there is a close candidate.
pub(crate) fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    suggest(name, candidates)
        .first()
        .map(|best| format!("did you mean `{best}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_suggested_and_unrelated_names_are_not() {
        let keys = ["max_num_seqs", "dtype", "mode"];
        assert_eq!(suggest("max_num_seq", keys), ["max_num_seqs"]);
        assert_eq!(suggest("dtyp", keys), ["dtype"]);
        assert!(suggest("tensor_parallel", keys).is_empty());
    }
}
