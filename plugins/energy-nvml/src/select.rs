//! Which GPUs to measure: the `devices` option and `CUDA_VISIBLE_DEVICES`,
//! parsed without touching NVML (so the rules are unit-tested here).

/// One way of naming a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// NVML's index (PCI bus order, as `nvidia-smi` numbers GPUs).
    Index(u32),
    /// A GPU UUID, `GPU-…`, or a unique prefix of one (CUDA accepts prefixes).
    Uuid(String),
    /// A MIG instance UUID, `MIG-…`: measured as its parent GPU, because NVML's
    /// energy counter and power sensor are per physical GPU.
    Mig(String),
}

/// Parse one entry. The old MIG form `MIG-GPU-<gpu uuid>/<gi>/<ci>` (drivers
/// before R470) names the parent GPU directly, so it becomes a [`Selector::Uuid`].
pub fn parse_selector(text: &str) -> Option<Selector> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Selector::Index);
    }
    if let Some(rest) = text.strip_prefix("MIG-") {
        if rest.starts_with("GPU-") {
            let gpu = rest.split('/').next().unwrap_or(rest);
            return (gpu.len() > "GPU-".len()).then(|| Selector::Uuid(gpu.to_owned()));
        }
        return (!rest.is_empty()).then(|| Selector::Mig(text.to_owned()));
    }
    if text.len() > "GPU-".len() && text.starts_with("GPU-") {
        return Some(Selector::Uuid(text.to_owned()));
    }
    None
}

/// `CUDA_VISIBLE_DEVICES`, read the way the CUDA runtime reads it: entries left
/// to right, stopping at the first one that names no device (so `-1`, or an
/// empty value, hides every GPU).
pub fn parse_cuda_visible_devices(value: &str) -> Vec<Selector> {
    value.split(',').map_while(parse_selector).collect()
}

/// Keep the first occurrence of each index, in order (two MIG slices of one
/// GPU are one device to measure).
pub fn dedup(indices: Vec<u32>) -> Vec<u32> {
    let mut seen = Vec::with_capacity(indices.len());
    for index in indices {
        if !seen.contains(&index) {
            seen.push(index);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(s: &str) -> Selector {
        Selector::Uuid(s.into())
    }

    #[test]
    fn indices_and_uuids() {
        assert_eq!(
            parse_cuda_visible_devices("2,0"),
            [Selector::Index(2), Selector::Index(0)]
        );
        assert_eq!(
            parse_cuda_visible_devices(" 1 , GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"),
            [
                Selector::Index(1),
                uuid("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6")
            ]
        );
        // CUDA accepts a unique prefix of a UUID.
        assert_eq!(parse_cuda_visible_devices("GPU-8932"), [uuid("GPU-8932")]);
    }

    #[test]
    fn mig_instances_in_both_forms() {
        assert_eq!(
            parse_cuda_visible_devices("MIG-5c89a1ba-9cbb-5c5c-8e6e-8b5b38d23b9a"),
            [Selector::Mig(
                "MIG-5c89a1ba-9cbb-5c5c-8e6e-8b5b38d23b9a".into()
            )]
        );
        // Pre-R470: the parent GPU's UUID, then GPU and compute instance ids.
        assert_eq!(
            parse_cuda_visible_devices("MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c7d3d4ee/1/0"),
            [uuid("GPU-e91edf3b-b297-37c1-a2a7-7601c7d3d4ee")]
        );
    }

    #[test]
    fn parsing_stops_at_the_first_invalid_entry_like_cuda() {
        assert_eq!(
            parse_cuda_visible_devices("0,1,-1,2"),
            [Selector::Index(0), Selector::Index(1)]
        );
        assert_eq!(parse_cuda_visible_devices("-1"), []);
        assert_eq!(parse_cuda_visible_devices(""), []);
        assert_eq!(parse_cuda_visible_devices("0,,1"), [Selector::Index(0)]);
        assert_eq!(parse_cuda_visible_devices("NoDevFiles"), []);
        assert_eq!(parse_cuda_visible_devices("GPU-"), []);
        assert_eq!(parse_cuda_visible_devices("MIG-"), []);
        assert_eq!(parse_cuda_visible_devices("99999999999,0"), []);
    }

    #[test]
    fn duplicates_collapse_in_order() {
        assert_eq!(dedup(vec![3, 1, 3, 0, 1]), [3, 1, 0]);
    }
}
