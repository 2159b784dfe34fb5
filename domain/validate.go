package domain

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Input limits. They keep commands, events, snapshots, view documents and
// messages bounded: README's Limits table lists them. Lengths in bytes are
// checked before anything else is done with a value; lengths in characters
// count Unicode code points.
const (
	MaxItems                = 100   // items of an order
	MaxQuantity             = 10000 // quantity of an item
	MaxIDLength             = 100   // bytes of an order or customer id
	MaxIdempotencyKeyLength = 128   // bytes of an idempotency key
	MaxSKULength            = 64    // characters of a SKU
	MaxTextLength           = 200   // characters of an item name or an address line
	MaxReasonLength         = 500   // characters of a cancellation reason
	MaxTrackingLength       = 100   // characters of a tracking number
	MaxDecimalLength        = 32    // bytes of a decimal amount such as "19.99"
	maxFractionDigits       = 4     // the most any ISO 4217 currency has
	maxEchoed               = 40    // bytes of a client's value quoted in a message
)

// CheckIdempotencyKey checks a client's idempotency key: at most
// MaxIdempotencyKeyLength bytes of UTF-8 without control characters. The
// empty key is allowed (the gateway then picks one). It returns an
// INVALID_INPUT *Error naming input.idempotencyKey, or nil.
func CheckIdempotencyKey(key string) error {
	p := path("input", "idempotencyKey")
	if len(key) > MaxIdempotencyKeyLength {
		return invalid(p, "idempotencyKey is longer than %d bytes", MaxIdempotencyKeyLength)
	}
	if !utf8.ValidString(key) {
		return invalid(p, "idempotencyKey is not valid UTF-8")
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return invalid(p, "idempotencyKey must not contain control characters")
		}
	}
	return nil
}

// Validate checks what can be checked about cmd without the order's state:
// required fields, lengths, ranges and formats. It returns an *Error with
// code INVALID_INPUT naming the first offending field, or nil.
func Validate(cmd Command) error {
	switch c := cmd.(type) {
	case PlaceOrder:
		return validatePlaceOrder(c)
	case AddOrderItem:
		if err := checkOrderID(c.OrderID); err != nil {
			return err
		}
		_, err := validateItem(c.Item, "", path("input", "item"))
		return err
	case RemoveOrderItem:
		if err := checkOrderID(c.OrderID); err != nil {
			return err
		}
		return checkText(c.SKU, MaxSKULength, true, path("input", "sku"))
	case ConfirmOrder:
		return checkOrderID(c.OrderID)
	case DeliverOrder:
		return checkOrderID(c.OrderID)
	case ShipOrder:
		if err := checkOrderID(c.OrderID); err != nil {
			return err
		}
		return checkText(c.TrackingNumber, MaxTrackingLength, true, path("input", "trackingNumber"))
	case CancelOrder:
		if err := checkOrderID(c.OrderID); err != nil {
			return err
		}
		if c.ReasonCode != "" && !c.ReasonCode.Valid() {
			return invalid(path("input", "reasonCode"), "reason code %s is not one of %v", quote(string(c.ReasonCode)), AllCancellationReasonCodes)
		}
		return checkText(c.Reason, MaxReasonLength, true, path("input", "reason"))
	case nil:
		return invalid(nil, "no command given")
	}
	return invalid(nil, "unknown command %s", cmd.CommandType())
}

func validatePlaceOrder(c PlaceOrder) error {
	if err := checkOrderID(c.OrderID); err != nil {
		return err
	}
	if err := checkID(c.CustomerID, path("input", "customerId"), "customer id"); err != nil {
		return err
	}
	if _, ok := CurrencyDigits(c.Currency); !ok {
		return invalid(path("input", "currencyCode"), "currency code %s is not an ISO 4217 code", quote(c.Currency))
	}
	if len(c.Items) == 0 {
		return invalid(path("input", "items"), "an order needs at least one item")
	}
	if len(c.Items) > MaxItems {
		return invalid(path("input", "items"), "an order holds at most %d items, got %d", MaxItems, len(c.Items))
	}
	seen := make(map[string]bool, len(c.Items))
	for i, it := range c.Items {
		p := path("input", "items", strconv.Itoa(i))
		if _, err := validateItem(it, c.Currency, p); err != nil {
			return err
		}
		if seen[it.SKU] {
			return invalid(append(p, "sku"), "sku %q appears more than once", it.SKU)
		}
		seen[it.SKU] = true
	}
	if c.ShippingAddress != nil {
		return validateAddress(*c.ShippingAddress, path("input", "shippingAddress"))
	}
	return nil
}

// validateItem checks an item and parses its price. With currency "" the
// price is only checked for shape (the order's currency is not known yet).
func validateItem(it ItemInput, currency string, p []string) (Item, error) {
	if err := checkText(it.SKU, MaxSKULength, true, append(p, "sku")); err != nil {
		return Item{}, err
	}
	if err := checkText(it.Name, MaxTextLength, true, append(p, "name")); err != nil {
		return Item{}, err
	}
	if it.Quantity < 1 || it.Quantity > MaxQuantity {
		return Item{}, invalid(append(p, "quantity"), "quantity must be between 1 and %d, got %d", MaxQuantity, it.Quantity)
	}
	priceCurrency := currency
	if priceCurrency == "" {
		priceCurrency = "CLF" // four fraction digits: the loosest shape check
	}
	price, err := ParseMinor(it.UnitPrice, priceCurrency)
	if err != nil {
		if currency == "" {
			return Item{}, invalid(append(p, "unitPrice"), "unit price %s is not a non-negative decimal amount of at most %d characters with at most %d decimals", quote(it.UnitPrice), MaxDecimalLength, maxFractionDigits)
		}
		return Item{}, invalid(append(p, "unitPrice"), "unit price: %s", err.Error())
	}
	return Item{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, UnitPrice: price}, nil
}

func validateAddress(a Address, p []string) error {
	fields := []struct {
		name, value string
		required    bool
	}{
		{"name", a.Name, true}, {"line1", a.Line1, true}, {"line2", a.Line2, false},
		{"city", a.City, true}, {"postalCode", a.PostalCode, true},
	}
	for _, f := range fields {
		if err := checkText(f.value, MaxTextLength, f.required, append(p, f.name)); err != nil {
			return err
		}
	}
	if len(a.Country) != 2 || !isUpperASCII(a.Country) {
		return invalid(append(p, "country"), "country must be an ISO 3166-1 alpha-2 code such as \"DE\", got %s", quote(a.Country))
	}
	return nil
}

func checkOrderID(id string) error {
	return checkID(id, path("input", "orderId"), "order id")
}

func checkID(id string, p []string, what string) error {
	if strings.TrimSpace(id) == "" {
		return invalid(p, "%s must not be empty", what)
	}
	if len(id) > MaxIDLength {
		return invalid(p, "%s is longer than %d bytes", what, MaxIDLength)
	}
	if !utf8.ValidString(id) {
		return invalid(p, "%s is not valid UTF-8", what)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalid(p, "%s %s must not contain spaces or control characters", what, quote(id))
		}
	}
	return nil
}

func checkText(s string, max int, required bool, p []string) error {
	name := p[len(p)-1]
	if required && strings.TrimSpace(s) == "" {
		return invalid(p, "%s must not be empty", name)
	}
	if utf8.RuneCountInString(s) > max {
		return invalid(p, "%s is longer than %d characters", name, max)
	}
	if !utf8.ValidString(s) {
		return invalid(p, "%s is not valid UTF-8", name)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(p, "%s must not contain control characters", name)
		}
	}
	return nil
}

func isUpperASCII(s string) bool {
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// quote quotes a client's value for a message, cut to maxEchoed bytes (at a
// character boundary, marked with "…"): messages never echo unbounded input.
func quote(s string) string {
	if len(s) <= maxEchoed {
		return strconv.Quote(s)
	}
	cut := maxEchoed
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// path builds a fresh field path; callers append to it without aliasing.
func path(parts ...string) []string { return parts[:len(parts):len(parts)] }
