package domain

import (
	"errors"
	"strconv"
	"strings"
)

// MaxUnitPriceMinor bounds a unit price (in minor units) so that a line total
// (price × 10,000) and an order total (× 100 lines) cannot overflow int64.
const MaxUnitPriceMinor = int64(1e12)

// Money is an amount in a currency's minor units (cents for USD): never
// floating point.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// String formats the amount as a decimal with the currency's number of
// fraction digits, e.g. "19.99".
func (m Money) String() string { return FormatMinor(m.Amount, m.Currency) }

// currencyDigits maps each active ISO 4217 code to its number of minor-unit
// digits.
var currencyDigits = func() map[string]int {
	m := map[string]int{}
	two := "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD " +
		"CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD " +
		"HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK " +
		"MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB " +
		"SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD " +
		"UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG"
	for _, c := range strings.Fields(two) {
		m[c] = 2
	}
	for _, c := range strings.Fields("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF") {
		m[c] = 0
	}
	for _, c := range strings.Fields("BHD IQD JOD KWD LYD OMR TND") {
		m[c] = 3
	}
	for _, c := range strings.Fields("CLF UYW") {
		m[c] = 4
	}
	return m
}()

// CurrencyDigits returns the number of minor-unit digits of an ISO 4217 code
// and whether the code is known.
func CurrencyDigits(code string) (int, bool) {
	d, ok := currencyDigits[code]
	return d, ok
}

// ParseMinor parses a non-negative decimal string such as "19.99" into minor
// units of currency. It rejects strings longer than MaxDecimalLength bytes,
// signs, exponents, more fraction digits than the currency allows, and
// amounts above MaxUnitPriceMinor. The returned error message names what was
// wrong and quotes at most the first 40 bytes of s.
func ParseMinor(s, currency string) (int64, error) {
	digits, ok := CurrencyDigits(currency)
	if !ok {
		return 0, errors.New("unknown currency " + quote(currency))
	}
	if s == "" {
		return 0, errors.New("amount is empty")
	}
	if len(s) > MaxDecimalLength {
		return 0, errors.New("amount is longer than " + strconv.Itoa(MaxDecimalLength) + " characters")
	}
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("amount must not be negative, got " + quote(s))
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, errors.New("amount must be a decimal number like \"19.99\", got " + quote(s))
	}
	if len(frac) > digits {
		return 0, errors.New("amount " + quote(s) + " has more than " + strconv.Itoa(digits) + " decimals, the most " + currency + " allows")
	}
	whole = strings.TrimLeft(whole, "0")
	// More than 13 whole digits always exceeds MaxUnitPriceMinor (1e12), and
	// 15 could overflow int64 once scaled by 10^4 (CLF, UYW) and wrap negative.
	if len(whole) > 13 {
		return 0, errors.New("amount " + quote(s) + " is too large")
	}
	var v int64
	for _, r := range whole {
		v = v*10 + int64(r-'0')
	}
	for i := 0; i < digits; i++ {
		v *= 10
		if i < len(frac) {
			v += int64(frac[i] - '0')
		}
	}
	if v > MaxUnitPriceMinor {
		return 0, errors.New("amount " + quote(s) + " is too large")
	}
	return v, nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// FormatMinor formats minor units as a decimal string with the currency's
// number of fraction digits.
func FormatMinor(amount int64, currency string) string {
	digits := currencyDigits[currency]
	neg := amount < 0
	if neg {
		amount = -amount
	}
	s := strconv.FormatInt(amount, 10)
	if digits > 0 {
		for len(s) <= digits {
			s = "0" + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
