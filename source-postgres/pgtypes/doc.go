// Package pgtypes turns PostgreSQL values into JSON.
//
// A capture reads rows two ways, by backfill queries and from the pgoutput
// replication stream, and both deliver each column as PostgreSQL's text
// output. This package is the one converter from that text to JSON, so that
// both paths produce identical documents. The text forms it parses are fixed
// by the session parameters every connection must set (see SessionParams).
//
// A Registry, loaded once per connection with LoadRegistry, describes every
// type of a database. Registry.Lookup resolves the type OID and modifier that
// a catalog query or a Relation message names; Type.AppendJSON converts a
// value and Type.Schema gives the JSON Schema of what AppendJSON emits.
//
// # Type mapping
//
// Schemas describe a non-null value; the caller adds "null" for a nullable
// column (see Nullable). SQL NULL is written by the caller, never by
// AppendJSON.
//
//	PostgreSQL                      JSON value                           JSON Schema
//	------------------------------  -----------------------------------  ------------------------------------------
//	boolean                         true, false                          {"type":"boolean"}
//	smallint, integer, bigint, oid  the digits as printed                {"type":"integer"}
//	numeric                         "12.50" (exact digits, as printed;   {"type":"string","format":"number"}
//	                                "NaN", "Infinity", "-Infinity")
//	real, double precision          1.5, 1e+300 (shortest exact form);   {"type":["number","string"],"format":"number"}
//	                                "NaN", "Infinity", "-Infinity"
//	money                           "$1,234.50" (as printed under        {"type":"string"}
//	                                lc_monetary C, whatever the server's
//	                                locale)
//	text, citext, name              "..."                                {"type":"string"}
//	character varying(n)            "..."                                {"type":"string"}
//	character(n)                    "ab  " (blank padding kept)          {"type":"string"}
//	bytea                           base64 of the bytes                  {"type":"string","contentEncoding":"base64"}
//	uuid                            "0e4f…" (as printed)                 {"type":"string","format":"uuid"}
//	json, jsonb                     the value itself, compacted          {"contentMediaType":...} (any JSON value)
//	date                            "2024-01-15"                         {"type":"string","format":"date"}
//	time                            "14:30:00.5Z"                        {"type":"string","format":"time"}
//	time with time zone             "14:30:00+05:30", "14:30:00Z"        {"type":"string","format":"time"}
//	timestamp                       "2024-01-15T14:30:00.123456Z"        {"type":"string","format":"date-time"}
//	timestamp with time zone        "2024-01-15T14:30:00.123456Z" (UTC)  {"type":"string","format":"date-time"}
//	interval                        "P1Y2M3DT4H5M6.5S" (ISO 8601)        {"type":"string"}
//	inet, cidr, macaddr, macaddr8   "192.168.0.1", "10.0.0.0/8" (as      {"type":"string"}
//	                                printed)
//	bit(n), bit varying(n)          "0101"                               {"type":"string"}
//	enum                            "label"                              {"type":"string"}
//	domain                          as its base type                     as its base type
//	array of T                      [v, ...], nested per dimension;      {"type":"array","items":T, null or array}
//	                                NULL elements are null
//	range, multirange               "[1,10)", "{[1,3),[5,7)}", "empty"   {"type":"string"}
//	everything else                 the text output as a string          {"type":"string"}
//
// No schema holds a limit the database can widen without rewriting the
// table (lengths, enum labels, a domain's CHECKs): see Type.Schema. The
// media types of json and jsonb are JSONMediaType and JSONBMediaType.
//
// "Everything else" covers tsvector, tsquery, xml, the geometric types,
// hstore, PostGIS types, composite types, and any type the registry does not
// know (one created after it was loaded): an unfamiliar type is never an
// error.
//
// Details:
//
//   - Fractional seconds are printed as PostgreSQL prints them: up to six
//     digits, trailing zeros dropped, none for whole seconds.
//   - Dates and timestamps outside what RFC 3339 can express are clamped so
//     that they stay valid and keep their order: infinity and years after 9999
//     become 9999-12-31 (timestamps 9999-12-31T23:59:59.999999Z); -infinity and
//     years before 0001 (BC dates) become 0001-01-01 (timestamps
//     0001-01-01T00:00:00Z). The time 24:00:00 becomes 23:59:59.999999.
//   - A timetz offset with seconds (possible for historical zones) cannot be
//     written in RFC 3339, so such a value is converted to UTC ("Z").
//   - json text is validated and compacted: whitespace between tokens is
//     dropped, so a document never contains a raw newline. A JSON null value
//     becomes null, indistinguishable from SQL NULL.
//   - Invalid UTF-8 in strings is replaced by U+FFFD, as are unpaired UTF-16
//     surrogate escapes ("\ud800") in json values, so the output is always
//     valid JSON that strict parsers accept.
//   - A Flow collection key must be a string, integer or boolean, so a key
//     column of a float, json or array type is emitted as a string of its
//     text output instead ("1.5", "NaN"; see AsKey). Key columns are also
//     encoded for ordering: see AppendKey.
//   - Array lower bounds other than 1 ("[0:2]={...}") are dropped: the JSON
//     array holds the elements in order. Because PostgreSQL does not enforce
//     an array column's declared dimensions, the items schema also admits
//     nested arrays.
package pgtypes
