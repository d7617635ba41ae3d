package pgtypes

// This file is over 500 lines because it holds one job, the date and time
// parsers and formatters, each hand-written for the hot path and tested
// against PostgreSQL's own output; splitting it would scatter one grammar.

import "math"

// Dates, times and timestamps arrive in the ISO DateStyle that
// SessionParams sets: "2024-01-15", "14:30:00.5", "14:30:00+05:30",
// "2024-01-15 14:30:00.123456+00", with " BC" after a date before year 1,
// years of five or more digits after 9999, and "infinity"/"-infinity".

const (
	microsPerSecond = 1_000_000
	microsPerDay    = 86_400 * microsPerSecond
	// pgEpochDays is 2000-01-01, PostgreSQL's epoch, in days since
	// 1970-01-01. Keys count from it as PostgreSQL does, which keeps every
	// timestamp PostgreSQL accepts within an int64 of microseconds.
	pgEpochDays = 10_957
)

// Keys of ±infinity: PostgreSQL represents them by the extreme values too.
const (
	keyInfinity    = math.MaxInt64
	keyNegInfinity = math.MinInt64
)

// civilTime is a parsed date and time of day.
type civilTime struct {
	year                 int64 // astronomical: 1 BC is year 0
	month, day           int
	hour, minute, second int
	micros               int // fraction of the second
	offset               int // seconds east of UTC
}

// special classifies "infinity" and "-infinity".
func special(text []byte) int {
	switch string(text) {
	case "infinity":
		return 1
	case "-infinity":
		return -1
	}
	return 0
}

// parseDate parses "YYYY-MM-DD" at the start of s.
func parseDate(s []byte) (year int64, month, day int, rest []byte, ok bool) {
	n := digits(s)
	if n < 4 || n > 9 || len(s) < n+6 || s[n] != '-' || s[n+3] != '-' {
		return 0, 0, 0, nil, false
	}
	year = int64(atoi(s[:n]))
	month, ok1 := twoDigits(s[n+1:])
	day, ok2 := twoDigits(s[n+4:])
	if !ok1 || !ok2 || month < 1 || month > 12 || day < 1 || day > 31 {
		return 0, 0, 0, nil, false
	}
	return year, month, day, s[n+6:], true
}

// parseClock parses "HH:MM:SS[.ffffff]" at the start of s.
func parseClock(s []byte) (hour, minute, second, micros int, rest []byte, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, 0, nil, false
	}
	hour, ok1 := twoDigits(s)
	minute, ok2 := twoDigits(s[3:])
	second, ok3 := twoDigits(s[6:])
	if !ok1 || !ok2 || !ok3 || hour > 24 || minute > 59 || second > 60 {
		return 0, 0, 0, 0, nil, false
	}
	s = s[8:]
	if len(s) > 0 && s[0] == '.' {
		n := digits(s[1:])
		if n == 0 || n > 6 {
			return 0, 0, 0, 0, nil, false
		}
		micros = atoi(s[1 : 1+n])
		for i := n; i < 6; i++ {
			micros *= 10
		}
		s = s[1+n:]
	}
	return hour, minute, second, micros, s, true
}

// parseOffset parses a zone offset "+HH", "-HH:MM" or "+HH:MM:SS" at the
// start of s, returning seconds east of UTC.
func parseOffset(s []byte) (offset int, rest []byte, ok bool) {
	if len(s) < 3 || s[0] != '+' && s[0] != '-' {
		return 0, nil, false
	}
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	h, ok := twoDigits(s[1:])
	if !ok {
		return 0, nil, false
	}
	offset, s = h*3600, s[3:]
	for unit := 60; unit >= 1 && len(s) > 0 && s[0] == ':'; unit /= 60 {
		v, ok := twoDigits(s[1:])
		if !ok {
			return 0, nil, false
		}
		offset, s = offset+v*unit, s[3:]
	}
	return sign * offset, s, true
}

// parseEra consumes a trailing " BC", converting year to astronomical
// numbering, and requires that nothing else follows.
func parseEra(s []byte, year int64) (int64, bool) {
	switch string(s) {
	case "":
		return year, true
	case " BC":
		return 1 - year, true
	}
	return 0, false
}

// parseDateText parses a date's text output (not ±infinity).
func parseDateText(text []byte) (civilTime, bool) {
	var c civilTime
	var rest []byte
	var ok bool
	if c.year, c.month, c.day, rest, ok = parseDate(text); !ok {
		return c, false
	}
	c.year, ok = parseEra(rest, c.year)
	return c, ok
}

// parseTimestampText parses a timestamp's text output (not ±infinity),
// with a zone offset when withZone.
func parseTimestampText(text []byte, withZone bool) (civilTime, bool) {
	var c civilTime
	var rest []byte
	var ok bool
	if c.year, c.month, c.day, rest, ok = parseDate(text); !ok || len(rest) == 0 || rest[0] != ' ' {
		return c, false
	}
	if c.hour, c.minute, c.second, c.micros, rest, ok = parseClock(rest[1:]); !ok {
		return c, false
	}
	if withZone {
		if c.offset, rest, ok = parseOffset(rest); !ok {
			return c, false
		}
	}
	c.year, ok = parseEra(rest, c.year)
	return c, ok
}

// parseTimeText parses a time's text output, with a zone offset when
// withZone.
func parseTimeText(text []byte, withZone bool) (civilTime, bool) {
	var c civilTime
	var rest []byte
	var ok bool
	if c.hour, c.minute, c.second, c.micros, rest, ok = parseClock(text); !ok {
		return c, false
	}
	if withZone {
		if c.offset, rest, ok = parseOffset(rest); !ok {
			return c, false
		}
	}
	return c, len(rest) == 0
}

// clockMicros returns the time of day in microseconds.
func (c *civilTime) clockMicros() int64 {
	return int64(c.hour)*3600*microsPerSecond + int64(c.minute)*60*microsPerSecond +
		int64(c.second)*microsPerSecond + int64(c.micros)
}

// timestampMicros returns the UTC instant in microseconds since 2000-01-01.
func (c *civilTime) timestampMicros() int64 {
	days := daysFromCivil(c.year, c.month, c.day) - pgEpochDays
	return days*microsPerDay + c.clockMicros() - int64(c.offset)*microsPerSecond
}

// civilFromMicros is the inverse of timestampMicros for offset 0.
func civilFromMicros(us int64) civilTime {
	days := floorDiv(us, microsPerDay)
	var c civilTime
	c.year, c.month, c.day = civilFromDays(days + pgEpochDays)
	c.setClock(us - days*microsPerDay)
	return c
}

// setClock sets the time of day from microseconds since midnight.
func (c *civilTime) setClock(us int64) {
	c.micros = int(us % microsPerSecond)
	s := us / microsPerSecond
	c.hour, c.minute, c.second = int(s/3600), int(s/60%60), int(s%60)
}

// daysFromCivil returns the days since 1970-01-01 of a date of the
// proleptic Gregorian calendar, for any year (astronomical numbering).
func daysFromCivil(year int64, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := floorDiv(year, 400)
	yoe := year - era*400                  // [0, 399]
	mp := int64((month + 9) % 12)          // March is 0
	doy := (153*mp+2)/5 + int64(day) - 1   // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146_097 + doe - 719_468     // 719468: 0000-03-01 to 1970-01-01
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(days int64) (year int64, month, day int) {
	days += 719_468
	era := floorDiv(days, 146_097)
	doe := days - era*146_097
	yoe := (doe - doe/1460 + doe/36524 - doe/146_096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// appendDateJSON converts a date, clamped to 0001-01-01 .. 9999-12-31.
func appendDateJSON(dst, text []byte) ([]byte, bool) {
	var c civilTime
	switch special(text) {
	case 1:
		c.year = 10_000
	case -1:
		c.year = 0
	default:
		var ok bool
		if c, ok = parseDateText(text); !ok {
			return dst, false
		}
	}
	dst = append(dst, '"')
	dst = appendCivilDate(dst, clamp(c))
	return append(dst, '"'), true
}

// appendTimestampJSON converts a timestamp to RFC 3339 in UTC, clamped to
// 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z.
func appendTimestampJSON(dst, text []byte, withZone bool) ([]byte, bool) {
	if out, ok := appendTimestampCommon(dst, text, withZone); ok {
		return out, true
	}
	var c civilTime
	switch special(text) {
	case 1:
		c.year = 10_000
	case -1:
		c.year = 0
	default:
		var ok bool
		if c, ok = parseTimestampText(text, withZone); !ok {
			return dst, false
		}
		if c.offset != 0 {
			c = civilFromMicros(c.timestampMicros())
		}
	}
	c = clamp(c)
	dst = append(dst, '"')
	dst = appendCivilDate(dst, c)
	dst = append(dst, 'T')
	dst = appendClock(dst, &c)
	return append(dst, 'Z', '"'), true
}

// appendTimestampCommon converts the form nearly every value takes under
// the session's DateStyle ISO and TimeZone UTC, "2024-01-15 14:30:00.123+00"
// (a four-digit year, no BC, offset +00 when withZone), by copying: the
// RFC 3339 form has the same digits. Anything else is left to the parser.
func appendTimestampCommon(dst, text []byte, withZone bool) ([]byte, bool) {
	n := len(text)
	if withZone {
		if n < 3 || text[n-3] != '+' || text[n-2] != '0' || text[n-1] != '0' {
			return dst, false
		}
		n -= 3
	}
	if n < 19 || text[4] != '-' || text[7] != '-' || text[10] != ' ' || text[13] != ':' || text[16] != ':' {
		return dst, false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if text[i] < '0' || text[i] > '9' {
			return dst, false
		}
	}
	if n > 19 {
		if text[19] != '.' || n == 20 || n > 26 {
			return dst, false
		}
		for _, c := range text[20:n] {
			if c < '0' || c > '9' {
				return dst, false
			}
		}
	}
	dst = append(dst, '"')
	dst = append(dst, text[:10]...)
	dst = append(dst, 'T')
	dst = append(dst, text[11:n]...)
	return append(dst, 'Z', '"'), true
}

// clamp maps dates before year 1 to the first instant of year 1 and dates
// after year 9999 to its last, which RFC 3339 can express.
func clamp(c civilTime) civilTime {
	switch {
	case c.year < 1:
		return civilTime{year: 1, month: 1, day: 1}
	case c.year > 9999:
		return civilTime{year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59, micros: 999_999}
	}
	return c
}

// appendTimeJSON converts a time to an RFC 3339 full-time: "14:30:00Z",
// "14:30:00.5+05:30". 24:00:00 becomes 23:59:59.999999, the last instant
// RFC 3339 can express.
func appendTimeJSON(dst, text []byte, withZone bool) ([]byte, bool) {
	c, ok := parseTimeText(text, withZone)
	if !ok {
		return dst, false
	}
	if c.offset%60 != 0 {
		// RFC 3339 offsets have no seconds: express the time in UTC.
		us := c.clockMicros() - int64(c.offset)*microsPerSecond
		c.setClock((us%microsPerDay + microsPerDay) % microsPerDay)
		c.offset = 0
	}
	if c.hour == 24 {
		c.hour, c.minute, c.second, c.micros = 23, 59, 59, 999_999
	}
	dst = append(dst, '"')
	dst = appendClock(dst, &c)
	if c.offset == 0 {
		dst = append(dst, 'Z')
	} else {
		sign, off := byte('+'), c.offset
		if off < 0 {
			sign, off = '-', -off
		}
		dst = append(dst, sign)
		dst = appendPadded(dst, int64(off/3600), 2)
		dst = append(dst, ':')
		dst = appendPadded(dst, int64(off/60%60), 2)
	}
	return append(dst, '"'), true
}

func appendCivilDate(dst []byte, c civilTime) []byte {
	dst = appendPadded(dst, c.year, 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int64(c.month), 2)
	dst = append(dst, '-')
	return appendPadded(dst, int64(c.day), 2)
}

// appendClock appends "HH:MM:SS" and the fraction as PostgreSQL prints it:
// trailing zeros dropped.
func appendClock(dst []byte, c *civilTime) []byte {
	dst = appendPadded(dst, int64(c.hour), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(c.minute), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(c.second), 2)
	if c.micros == 0 {
		return dst
	}
	dst = append(dst, '.')
	frac, n := c.micros, 6
	for frac%10 == 0 {
		frac, n = frac/10, n-1
	}
	return appendPadded(dst, int64(frac), n)
}

// appendPadded appends a non-negative v with at least width digits.
func appendPadded(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	buf[i] = byte('0' + v)
	return append(dst, buf[i:]...)
}

func twoDigits(s []byte) (int, bool) {
	if len(s) < 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// atoi converts a run of at most 9 ASCII digits.
func atoi(s []byte) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// Key forms: days or microseconds as integers, the inverse of which
// KeyParam needs to print.

func dateKey(text []byte) (int64, bool) {
	switch special(text) {
	case 1:
		return keyInfinity, true
	case -1:
		return keyNegInfinity, true
	}
	c, ok := parseDateText(text)
	return daysFromCivil(c.year, c.month, c.day) - pgEpochDays, ok
}

func timestampKey(text []byte, withZone bool) (int64, bool) {
	switch special(text) {
	case 1:
		return keyInfinity, true
	case -1:
		return keyNegInfinity, true
	}
	c, ok := parseTimestampText(text, withZone)
	return c.timestampMicros(), ok
}

func timeKey(text []byte) (int64, bool) {
	c, ok := parseTimeText(text, false)
	return c.clockMicros(), ok
}

// formatDate prints days since 2000-01-01 as a date literal.
func formatDate(days int64) string {
	switch days {
	case keyInfinity:
		return "infinity"
	case keyNegInfinity:
		return "-infinity"
	}
	var c civilTime
	c.year, c.month, c.day = civilFromDays(days + pgEpochDays)
	return string(appendEra(appendCivilDate(nil, bce(c)), c.year))
}

// formatTimestamp prints microseconds since 2000-01-01 as a timestamp
// literal, in UTC when withZone.
func formatTimestamp(us int64, withZone bool) string {
	switch us {
	case keyInfinity:
		return "infinity"
	case keyNegInfinity:
		return "-infinity"
	}
	c := civilFromMicros(us)
	b := appendCivilDate(make([]byte, 0, 40), bce(c))
	b = append(b, ' ')
	b = appendClock(b, &c)
	if withZone {
		b = append(b, "+00"...)
	}
	return string(appendEra(b, c.year))
}

// formatTime prints microseconds since midnight as a time literal.
func formatTime(us int64) string {
	var c civilTime
	c.setClock(us)
	return string(appendClock(make([]byte, 0, 16), &c))
}

// bce renumbers a year before 1 for printing with " BC".
func bce(c civilTime) civilTime {
	if c.year < 1 {
		c.year = 1 - c.year
	}
	return c
}

func appendEra(b []byte, year int64) []byte {
	if year < 1 {
		return append(b, " BC"...)
	}
	return b
}
