// Package apikey defines Gatehouse API keys: their format, generation,
// checksum, keyed hashing, and scanning of files and git history for leaked
// keys. It does no I/O apart from reading the files and repositories it is
// asked to scan, and imports nothing else from Gatehouse.
//
// # Key format
//
// A key looks like GitHub's tokens:
//
//	gk_live_0123456789ABabcdefghijklmnopqrstuvwxyzABCDEF0a1B2c
//	└┘ └──┘ └────┬─────┘└───────────────┬──────────────┘└─┬──┘
//	prefix env   ID (12)           secret (32)          CRC32 (6)
//
// The prefix (default "gk", configurable: 2–8 lowercase letters or digits)
// says the string is a Gatehouse key, and the environment ("live" or
// "test") says where it works. After them comes one base62 body without
// separators, so a double click selects the whole key:
//
//   - ID: 12 random base62 characters (71 bits). It is public; the store
//     finds the key's record by it.
//   - Secret: 32 random base62 characters from crypto/rand, about 190.5
//     bits. Even if the masked form (which shows the last four characters)
//     or the whole checksum is known, more than 158 bits remain unknown.
//   - Checksum: the CRC32 (IEEE) of everything before it, as 6 base62
//     characters, zero-padded. A typo or a made-up key is rejected in
//     nanoseconds without a store lookup, and scanners can tell a real key
//     from a random string that has the same shape.
//
// Every key of a given format has the same length. See [Format.Generate],
// [Format.Parse] and [LooksLikeKey].
//
// # Reason codes
//
// Every refusal of a key has a distinct [Reason], written to the owner's
// logs and audit records. The response to the caller stays vague, so that it
// does not help an attacker enumerate keys. This package returns the first
// five; the layers that look keys up in the store use the rest.
//
//	code                meaning                                          returned by
//	wrong_prefix        not this deployment's key prefix                 Format.Parse
//	wrong_environment   a valid-looking key for the other environment    Format.Parse
//	wrong_length        right prefix, wrong number of characters          Format.Parse
//	invalid_character   a character outside base62 in the body           Format.Parse
//	bad_checksum        the CRC32 does not match: a typo or a fake       Format.Parse
//	unknown_id          well-formed, but no key has this ID              store layer
//	wrong_secret        the ID exists, the secret does not match         store layer
//	revoked             the key was revoked                              store layer
//	expired             the key is past its expiry time                  store layer
//	rotated             the key was rotated and its grace period ended   store layer
//	ip_denied           the caller's IP is outside the key's allow-list  verifier
//	rate_limited        the key is over its rate limit                   verifier
//	key_in_query        the key was sent in a URL query string           HTTP layer
//
// # Hashing
//
// Keys are stored only as [Hasher.Hash]: HMAC-SHA-256 under a server
// pepper. See [Hasher] for why a fast keyed hash is the right choice here.
//
// # Leak scanning
//
// [Scanner] finds keys with a valid checksum in a stream
// ([Scanner.ScanReader]), a directory tree ([Scanner.ScanTree]) or every
// blob reachable in a git repository ([Scanner.ScanGitHistory]). Findings
// carry the key's ID and, on request, its keyed hash; never its secret.
//
// # Security
//
// No plaintext key ever appears in an error message from this package. A
// [Key] formats, logs (through [log/slog]) and marshals only its masked form;
// the plaintext is reachable only through [Key.Plaintext].
package apikey
