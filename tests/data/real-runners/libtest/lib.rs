pub fn add(a: u64, b: u64) -> u64 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds() { assert_eq!(add(2, 2), 4); }
    #[test]
    fn fails() { assert_eq!(add(2, 2), 5); }
    #[test]
    #[ignore]
    fn ignored_slow() { assert_eq!(add(1, 1), 2); }
    #[test]
    #[ignore = "needs a GPU"]
    fn ignored_gpu() {}
    #[test]
    #[should_panic]
    fn panics() { panic!("expected"); }
}
