//! trybuild cases for spec errors live in tests/.
