//! One module per subcommand; each is a thin shell over the SDK, kpl or kcl.

pub(crate) mod consume;
pub(crate) mod produce;
pub(crate) mod stream;
pub(crate) mod top;
