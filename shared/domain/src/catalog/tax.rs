use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tax {
    pub code: String,
    pub name: String,
    /// Percent (`"20"` = 20 %).
    pub rate: Decimal,
}
