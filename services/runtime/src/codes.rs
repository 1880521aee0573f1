//! Fixed lists as enums, from the API to the database ([`crate::codes!`]): a status, an
//! outcome, a reason is a code read at a glance and counted in reports, never free text.

/// Declares a fixed list as an enum: each variant with its code (what is stored and sent)
/// and its words for people; `ALL`, `code`, `label`, `parse`, `codes` (every code, for an
/// error that says what is accepted) and `Display` (the code).
///
/// ```
/// runtime::codes!(
///     /// A colour.
///     Colour { Red = "red": "Red", DarkBlue = "dark_blue": "Dark blue" }
/// );
/// assert_eq!(Colour::parse("dark_blue"), Some(Colour::DarkBlue));
/// assert_eq!(Colour::codes(), "red, dark_blue");
/// ```
#[macro_export]
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal : $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// How a page names it.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            pub fn parse(code: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.code() == code)
            }

            /// Every code, for an error that says what is accepted.
            pub fn codes() -> String {
                Self::ALL.iter().map(|v| v.code()).collect::<Vec<_>>().join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}
