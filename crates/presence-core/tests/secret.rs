//! The name-hash secret is fixed once per process, so this test has a
//! binary, and a process, of its own: nothing has hashed a name before it.

use presence_core::hashing::{set_secret, SecretAlreadySet};

#[test]
fn the_first_secret_set_stays_fixed() {
    assert_eq!(set_secret(7), Ok(()));
    assert_eq!(set_secret(7), Ok(()), "the same secret again is allowed");
    assert_eq!(set_secret(8), Err(SecretAlreadySet), "another is refused");
    assert_eq!(set_secret(7), Ok(()), "and the first stays");
}
