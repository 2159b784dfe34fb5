package domain

import (
	"sort"
	"strconv"
	"strings"
	"testing"
)

func TestParseMinor(t *testing.T) {
	for _, tc := range []struct {
		s, currency string
		want        int64
		wantErr     string // substring; "" means success
	}{
		{"19.99", "USD", 1999, ""},
		{"19.9", "USD", 1990, ""},
		{"19", "USD", 1900, ""},
		{"0", "USD", 0, ""},
		{"0.0", "USD", 0, ""},
		{"0.00", "USD", 0, ""},
		{"00000", "USD", 0, ""},
		{"0.01", "USD", 1, ""},
		{"007.05", "USD", 705, ""},
		{"10000000000", "USD", MaxUnitPriceMinor, ""},
		{"10000000000.00", "USD", MaxUnitPriceMinor, ""},
		{"00000000000000000010000000000.00", "USD", MaxUnitPriceMinor, ""}, // 32 characters: the longest allowed
		{"000000000000000000010000000000.00", "USD", 0, "longer than 32 characters"},
		{strings.Repeat("0", 5000) + "1", "USD", 0, "longer than 32 characters"},
		{"10000000000.01", "USD", 0, "too large"},
		{"99999999999999", "USD", 0, "too large"},
		{"999999999999999999999999", "USD", 0, "too large"},
		{"19.999", "USD", 0, "more than 2 decimals"},
		{"1.000", "USD", 0, "more than 2 decimals"},
		{"100", "JPY", 100, ""},
		{"1000000000000", "JPY", MaxUnitPriceMinor, ""},
		{"1000000000001", "JPY", 0, "too large"},
		{"100.5", "JPY", 0, "more than 0 decimals"},
		{"100.0", "JPY", 0, "more than 0 decimals"},
		{"1.234", "KWD", 1234, ""},
		{"0.001", "KWD", 1, ""},
		{"1.2345", "KWD", 0, "more than 3 decimals"},
		{"1000000000", "KWD", MaxUnitPriceMinor, ""},
		{"1.2345", "CLF", 12345, ""},
		{"100000000", "CLF", MaxUnitPriceMinor, ""},
		{"100000000.0001", "CLF", 0, "too large"},
		{"922337203685478", "CLF", 0, "too large"}, // would overflow int64 when scaled
		{"999999999999999", "CLF", 0, "too large"},
		{"999999999999999", "UYW", 0, "too large"},
		{"999999999999999", "KWD", 0, "too large"},
		{"", "USD", 0, "empty"},
		{"-1", "USD", 0, "negative"},
		{"-0", "USD", 0, "negative"},
		{"-0.01", "USD", 0, "negative"},
		{"+1", "USD", 0, "decimal number"},
		{"abc", "USD", 0, "decimal number"},
		{"1e3", "USD", 0, "decimal number"},
		{"1E3", "USD", 0, "decimal number"},
		{"0x1F", "USD", 0, "decimal number"},
		{"Inf", "USD", 0, "decimal number"},
		{"NaN", "USD", 0, "decimal number"},
		{" 1", "USD", 0, "decimal number"},
		{"1 ", "USD", 0, "decimal number"},
		{"1,00", "USD", 0, "decimal number"},
		{"1_000", "USD", 0, "decimal number"},
		{"1.", "USD", 0, "decimal number"},
		{".5", "USD", 0, "decimal number"},
		{".", "USD", 0, "decimal number"},
		{"1..2", "USD", 0, "decimal number"},
		{"1.2.3", "USD", 0, "decimal number"},
		{"١", "USD", 0, "decimal number"}, // Arabic-Indic digit one
		{"1\x00", "USD", 0, "decimal number"},
		{"\xff", "USD", 0, "decimal number"},
		{"1", "XYZ", 0, "unknown currency"},
		{"1", "usd", 0, "unknown currency"},
		{"1", "", 0, "unknown currency"},
	} {
		got, err := ParseMinor(tc.s, tc.currency)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseMinor(%q, %s) = %d, %v; want %d", tc.s, tc.currency, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseMinor(%q, %s) = %d, nil; want error containing %q", tc.s, tc.currency, got, tc.wantErr)
		} else if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseMinor(%q, %s) error = %q; want it to contain %q", tc.s, tc.currency, err, tc.wantErr)
		}
		if got != 0 {
			t.Errorf("ParseMinor(%q, %s) returned %d with an error", tc.s, tc.currency, got)
		}
	}
}

func TestFormatMinor(t *testing.T) {
	for _, tc := range []struct {
		amount   int64
		currency string
		want     string
	}{
		{1999, "USD", "19.99"},
		{1990, "USD", "19.90"},
		{5, "USD", "0.05"},
		{50, "USD", "0.50"},
		{0, "USD", "0.00"},
		{100, "USD", "1.00"},
		{-1999, "USD", "-19.99"},
		{-5, "USD", "-0.05"},
		{MaxUnitPriceMinor, "USD", "10000000000.00"},
		{100, "JPY", "100"},
		{0, "JPY", "0"},
		{-7, "JPY", "-7"},
		{1234, "KWD", "1.234"},
		{1, "KWD", "0.001"},
		{1000, "KWD", "1.000"},
		{12345, "CLF", "1.2345"},
		{1, "CLF", "0.0001"},
		{1999, "EUR", "19.99"},
		{1999, "XYZ", "1999"}, // unknown currency: no fraction digits
	} {
		if got := FormatMinor(tc.amount, tc.currency); got != tc.want {
			t.Errorf("FormatMinor(%d, %s) = %q, want %q", tc.amount, tc.currency, got, tc.want)
		}
	}
	if got := (Money{Amount: 1999, Currency: "USD"}).String(); got != "19.99" {
		t.Errorf("Money.String() = %q", got)
	}
}

func TestCurrencyDigits(t *testing.T) {
	for code, want := range map[string]int{"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "CLF": 4} {
		if d, ok := CurrencyDigits(code); !ok || d != want {
			t.Errorf("CurrencyDigits(%s) = %d, %v; want %d", code, d, ok, want)
		}
	}
	for _, code := range []string{"XYZ", "usd", "", "US", "USDD", "EURO"} {
		if _, ok := CurrencyDigits(code); ok {
			t.Errorf("CurrencyDigits(%q) is known", code)
		}
	}
	for code, d := range currencyDigits {
		if len(code) != 3 || !isUpperASCII(code) || d < 0 || d > maxFractionDigits {
			t.Errorf("currency table entry %q -> %d is malformed", code, d)
		}
	}
}

// roundTripValues are amounts in [0, MaxUnitPriceMinor] that exercise every
// digit position: a dense low range, powers of ten and their neighbours, and
// pseudo-random values.
func roundTripValues() []int64 {
	var vs []int64
	for v := int64(0); v <= 1100; v++ {
		vs = append(vs, v)
	}
	for p := int64(10); p < MaxUnitPriceMinor; p *= 10 {
		vs = append(vs, p-1, p, p+1)
	}
	vs = append(vs, MaxUnitPriceMinor-1, MaxUnitPriceMinor)
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < 500; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		vs = append(vs, int64(x>>1)%(MaxUnitPriceMinor+1))
	}
	return vs
}

func sortedCurrencies() []string {
	cs := make([]string, 0, len(currencyDigits))
	for c := range currencyDigits {
		cs = append(cs, c)
	}
	sort.Strings(cs)
	return cs
}

// TestMoneyRoundTrip: for every currency and many amounts, formatting then
// parsing gives the amount back, and the formatted string has exactly the
// currency's number of decimals.
func TestMoneyRoundTrip(t *testing.T) {
	values := roundTripValues()
	for _, cur := range sortedCurrencies() {
		digits, _ := CurrencyDigits(cur)
		for _, v := range values {
			s := FormatMinor(v, cur)
			got, err := ParseMinor(s, cur)
			if err != nil || got != v {
				t.Fatalf("ParseMinor(FormatMinor(%d, %s) = %q) = %d, %v", v, cur, s, got, err)
			}
			_, frac, hasDot := strings.Cut(s, ".")
			if hasDot != (digits > 0) || len(frac) != digits {
				t.Fatalf("FormatMinor(%d, %s) = %q, want %d decimals", v, cur, s, digits)
			}
		}
		// One minor unit above the maximum is rejected.
		if _, err := ParseMinor(FormatMinor(MaxUnitPriceMinor+1, cur), cur); err == nil {
			t.Errorf("%s: amount above MaxUnitPriceMinor accepted", cur)
		}
	}
}

// refParseMinor is an independent oracle for ParseMinor: it checks the shape
// by hand and compares magnitudes as digit strings, so it cannot overflow.
func refParseMinor(s string, digits int) (int64, bool) {
	if len(s) > MaxDecimalLength {
		return 0, false // the input limit, checked before anything else
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	isDigits := func(x string) bool {
		for i := 0; i < len(x); i++ {
			if x[i] < '0' || x[i] > '9' {
				return false
			}
		}
		return true
	}
	if whole == "" || !isDigits(whole) || !isDigits(frac) || (hasDot && frac == "") || len(frac) > digits {
		return 0, false
	}
	all := strings.TrimLeft(whole+frac+strings.Repeat("0", digits-len(frac)), "0")
	max := strconv.FormatInt(MaxUnitPriceMinor, 10)
	if len(all) > len(max) || (len(all) == len(max) && all > max) {
		return 0, false
	}
	if all == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(all, 10, 64)
	return v, err == nil
}

// canonicalAmount is how FormatMinor writes the amount s denotes.
func canonicalAmount(s string, digits int) string {
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	if digits == 0 {
		return whole
	}
	return whole + "." + frac + strings.Repeat("0", digits-len(frac))
}

var fuzzCurrencies = []string{"USD", "JPY", "KWD", "CLF", "EUR", "XYZ", "usd", ""}

func checkParseMinor(t *testing.T, s, cur string) {
	v, err := ParseMinor(s, cur)
	digits, known := CurrencyDigits(cur)
	if !known {
		if err == nil {
			t.Fatalf("ParseMinor(%q, %q) accepted an unknown currency", s, cur)
		}
		return
	}
	want, ok := refParseMinor(s, digits)
	if (err == nil) != ok || (ok && v != want) {
		t.Fatalf("ParseMinor(%q, %s) = %d, %v; reference says %d, ok=%v", s, cur, v, err, want, ok)
	}
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("ParseMinor(%q, %s): empty error message", s, cur)
		}
		return
	}
	if v < 0 || v > MaxUnitPriceMinor {
		t.Fatalf("ParseMinor(%q, %s) = %d, out of range", s, cur, v)
	}
	f := FormatMinor(v, cur)
	if f != canonicalAmount(s, digits) {
		t.Fatalf("FormatMinor(ParseMinor(%q, %s)) = %q, want %q", s, cur, f, canonicalAmount(s, digits))
	}
	if back, err := ParseMinor(f, cur); err != nil || back != v {
		t.Fatalf("ParseMinor(%q, %s) = %d, %v after formatting %d", f, cur, back, err, v)
	}
}

// TestParseMinorAgainstReference runs the fuzz property over a fixed corpus,
// so it is checked on every plain `go test`.
func TestParseMinorAgainstReference(t *testing.T) {
	inputs := []string{"", "0", "1", "1.", ".1", "19.99", "19.999", "1.2345", "1.23456", "00.10", "-1", "+1", "1e3",
		"1000000000000", "1000000000001", "10000000000.00", "10000000000.01", "100000000.0000", "100000000.0001",
		"9999999999999", "99999999999999", "922337203685478", "999999999999999", "9999999999999999", "18446744073709551616",
		"0000000000000000000000001", "1.0.0", "١٢", "\xff"}
	for _, s := range inputs {
		for _, cur := range fuzzCurrencies {
			checkParseMinor(t, s, cur)
		}
	}
}

func FuzzParseMinor(f *testing.F) {
	for i, s := range []string{"19.99", "19.999", "100", "100.5", "1.234", "-1", "abc", "1e3", "", "0", "007.5",
		"10000000000.00", "999999999999999", "1.", ".5", "1.2345"} {
		f.Add(s, uint8(i))
	}
	f.Fuzz(func(t *testing.T, s string, ci uint8) {
		checkParseMinor(t, s, fuzzCurrencies[int(ci)%len(fuzzCurrencies)])
	})
}
