package store

// The trail's object-key layout, a contract on disk and in S3 (see
// docs/FORMAT.md): this file is the one place that builds and parses it.
//
//	dt=YYYY-MM-DD/<chain_id>-<first seq, 20 digits>.parquet  a sealed batch
//	checkpoints/<chain_id>/<size, 20 digits>.checkpoint      its signed checkpoint
//	keys/<chain_id>-<key hash>.vkey                          a published verifier key
//	tiles/<chain_id>/tile/<L>/<N>[.p/<W>]                    a tile of the chain's tree
//	checkpoints/<chain_id>/<size>.checkpoint.cosig.<witness> a witness's cosignature lines
//	checkpoints/<chain_id>/<size>.checkpoint.tsr             an RFC 3161 timestamp token

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Where checkpoints and published verifier keys are stored beside the
// trail: List with these prefixes finds them.
const (
	CheckpointsPrefix = "checkpoints/"
	KeysPrefix        = "keys/"
	// BatchesPrefix starts every key BatchKey makes: List with it finds
	// the batches without the checkpoints and the tree's tiles.
	BatchesPrefix = dayPrefix
)

// Errors of the Parse functions. Check with errors.Is.
var (
	// ErrNotBatchKey: ParseBatchKey was given a key BatchKey does not make.
	ErrNotBatchKey = errors.New("store: not a batch key")
	// ErrNotCheckpointKey: ParseCheckpointKey was given a key
	// CheckpointKey does not make.
	ErrNotCheckpointKey = errors.New("store: not a checkpoint key")
	// ErrNotVerifierKeyKey: ParseVerifierKeyKey was given a key
	// VerifierKeyKey does not make.
	ErrNotVerifierKeyKey = errors.New("store: not a verifier key's key")
	// ErrNotCosignatureKey: ParseCosignatureKey was given a key
	// CosignatureKey does not make.
	ErrNotCosignatureKey = errors.New("store: not a cosignature key")
	// ErrNotTimestampKey: ParseTimestampKey was given a key TimestampKey
	// does not make.
	ErrNotTimestampKey = errors.New("store: not a timestamp key")
)

const (
	dayPrefix     = "dt="
	dayLayout     = "2006-01-02"
	batchExt      = ".parquet"
	checkpointExt = ".checkpoint"
	vkeyExt       = ".vkey"
	seqDigits     = 20 // math.MaxInt64 has 19 digits
	seqPadding    = "%020d"
	// unknownKeyHash names a verifier key that is not "name+hash+key".
	unknownKeyHash = "unknown"
)

// maxChainIDLen bounds chain ids so that batch keys stay short.
const maxChainIDLen = 128

// ValidChainID reports whether id is usable in batch keys: 1 to 128
// characters of [A-Za-z0-9._-], not starting with '.' (which also excludes
// "." and ".."): a batch file named ".x-…" would be skipped by List and by
// some readers (Athena skips names that start with '.' or '_'), though not
// by others (DuckDB's globs read it).
func ValidChainID(id string) bool {
	if id == "" || len(id) > maxChainIDLen || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// BatchKey returns the object key of the batch of chain chainID starting at
// firstSeq: "dt=YYYY-MM-DD/<chainID>-<firstSeq as 20 zero-padded
// digits>.parquet", dt the UTC date of t. The padding keeps lexical order
// equal to seq order. chainID must satisfy ValidChainID and firstSeq must not
// be negative, or ParseBatchKey will not accept the key.
func BatchKey(chainID string, firstSeq int64, t time.Time) string {
	return dayPrefix + t.UTC().Format(dayLayout) + "/" + chainID + "-" + fmt.Sprintf(seqPadding, firstSeq) + batchExt
}

// ParseBatchKey is the inverse of BatchKey: it returns the chain id, the
// first seq and the day ("YYYY-MM-DD") of a batch key. Chain ids may contain
// '-': the seq follows the last one. Any other key gives an error wrapping
// ErrNotBatchKey.
func ParseBatchKey(key string) (chainID string, firstSeq int64, day string, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotBatchKey, key, why) }
	dir, name, ok := strings.Cut(key, "/")
	if !ok || !strings.HasPrefix(dir, dayPrefix) {
		return "", 0, "", bad(`want "dt=YYYY-MM-DD/<chain>-<seq>.parquet"`)
	}
	day = dir[len(dayPrefix):]
	if _, perr := time.Parse(dayLayout, day); perr != nil || len(day) != len(dayLayout) {
		return "", 0, "", bad("day " + strconv.Quote(day) + " is not YYYY-MM-DD")
	}
	base, ok := strings.CutSuffix(name, batchExt)
	if !ok {
		return "", 0, "", bad("no " + batchExt + " suffix")
	}
	dash := strings.LastIndexByte(base, '-')
	if dash < 0 {
		return "", 0, "", bad("no '-' before the seq")
	}
	chainID, digits := base[:dash], base[dash+1:]
	if !ValidChainID(chainID) {
		return "", 0, "", bad("invalid chain id " + strconv.Quote(chainID))
	}
	firstSeq, why := parseDigits(digits)
	if why != "" {
		return "", 0, "", bad("seq " + why)
	}
	return chainID, firstSeq, day, nil
}

// ParseBatchName is ParseBatchKey for a name a listing returns, which may
// lie deeper than a batch key (a copy under another directory,
// ".hidden/dt=…/…"): it parses the name's last two segments.
func ParseBatchName(name string) (chainID string, firstSeq int64, day string, err error) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		if j := strings.LastIndexByte(name[:i], '/'); j >= 0 {
			name = name[j+1:]
		}
	}
	return ParseBatchKey(name)
}

// IsBatchKey reports whether a listed name is read as a batch file by a
// reader's glob (read_parquet('<dir>/**/*.parquet')): any name ending in
// .parquet. ParseBatchKey says whether it is also a name BatchKey makes.
func IsBatchKey(name string) bool { return strings.HasSuffix(name, batchExt) }

// CheckpointKey returns where the checkpoint of chainID at size (entries,
// the last seq + 1) is stored beside the trail:
// "checkpoints/<chainID>/<size as 20 zero-padded digits>.checkpoint". The
// padding keeps lexical order equal to size order within a chain.
func CheckpointKey(chainID string, size int64) string {
	return CheckpointsPrefix + chainID + "/" + fmt.Sprintf(seqPadding, size) + checkpointExt
}

// ParseCheckpointKey is the inverse of CheckpointKey: it returns the chain
// id and the size of a checkpoint key. Any other key gives an error
// wrapping ErrNotCheckpointKey.
func ParseCheckpointKey(key string) (chainID string, size int64, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotCheckpointKey, key, why) }
	rest, ok := strings.CutPrefix(key, CheckpointsPrefix)
	if !ok {
		return "", 0, bad(`want "checkpoints/<chain>/<size>.checkpoint"`)
	}
	chainID, name, ok := strings.Cut(rest, "/")
	if !ok || !ValidChainID(chainID) {
		return "", 0, bad("invalid chain id " + strconv.Quote(chainID))
	}
	digits, ok := strings.CutSuffix(name, checkpointExt)
	if !ok {
		return "", 0, bad("no " + checkpointExt + " suffix")
	}
	size, why := parseDigits(digits)
	if why != "" {
		return "", 0, bad("size " + why)
	}
	return chainID, size, nil
}

// IsCheckpointKey reports whether a listed name is a stored checkpoint's
// as a verifier reads them: a name under CheckpointsPrefix ending in
// .checkpoint, whatever else it holds (a checkpoint stored under another
// name is checked, and its name reported, not skipped). ParseCheckpointKey
// says whether it is also a name CheckpointKey makes.
func IsCheckpointKey(name string) bool {
	return strings.HasPrefix(name, CheckpointsPrefix) && strings.HasSuffix(name, checkpointExt)
}

// VerifierKeyKey returns where a verifier key of chainID (note format,
// "name+hash+key") is published beside the trail:
// "keys/<chainID>-<key hash>.vkey", the hash "unknown" when vkey is not in
// the note format.
func VerifierKeyKey(chainID, vkey string) string {
	hash := unknownKeyHash
	if parts := strings.SplitN(vkey, "+", 3); len(parts) == 3 {
		hash = parts[1]
	}
	return KeysPrefix + chainID + "-" + hash + vkeyExt
}

// ParseVerifierKeyKey is the inverse of VerifierKeyKey: it returns the
// chain id and the key hash of "keys/<chain_id>-<key hash>.vkey". Chain ids
// may contain '-': the hash follows the last one. Any other key, among them
// a *.vkey name without a chain id, gives an error wrapping
// ErrNotVerifierKeyKey.
func ParseVerifierKeyKey(key string) (chainID, keyHash string, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotVerifierKeyKey, key, why) }
	if !IsVerifierKeyKey(key) {
		return "", "", bad(`want "keys/<chain>-<key hash>.vkey"`)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(key, KeysPrefix), vkeyExt)
	dash := strings.LastIndexByte(base, '-')
	if dash <= 0 {
		return "", "", bad("no chain id before a '-'")
	}
	return base[:dash], base[dash+1:], nil
}

// IsVerifierKeyKey reports whether a listed name is where a verifier key
// would be published: a *.vkey name directly under KeysPrefix.
// ParseVerifierKeyKey says whether it also names a chain.
func IsVerifierKeyKey(name string) bool {
	rest, ok := strings.CutPrefix(name, KeysPrefix)
	return ok && strings.HasSuffix(rest, vkeyExt) && !strings.Contains(rest, "/")
}

// parseDigits reads a seq or size of exactly 20 decimal digits; why says
// what is wrong, "" when nothing is.
func parseDigits(digits string) (n int64, why string) {
	if len(digits) != seqDigits || strings.Trim(digits, "0123456789") != "" {
		return 0, strconv.Quote(digits) + " is not 20 digits"
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, digits + " out of range"
	}
	return n, ""
}

// TilesPrefix is where the tiles of each chain's tree are stored beside
// the trail: List with it (or with TilesPrefix + chain id + "/") finds
// them.
const TilesPrefix = "tiles/"

// TileHeight is the height of the stored tiles: each holds up to 256
// hashes of one level of the tree (C2SP tlog-tiles, Go's checksum
// database).
const TileHeight = 8

// ErrNotTileKey: ParseTileKey was given a key TileKey does not make.
var ErrNotTileKey = errors.New("store: not a tile key")

// TileKey returns where tile t of chain chainID's tree is stored:
// "tiles/<chainID>/tile/<L>/<N>[.p/<W>]" (N in groups of three digits,
// "x001/234"), the layout of C2SP tlog-tiles, which is
// golang.org/x/mod/sumdb/tlog's Tile.Path without its height (always
// TileHeight). A partial tile of width W has a key of its own, so that no
// object is ever rewritten. chainID must satisfy ValidChainID and t be a
// hash tile of height TileHeight, or ParseTileKey will not accept the key.
func TileKey(chainID string, t tlog.Tile) string {
	return TilesPrefix + chainID + "/" + strings.Replace(t.Path(), tileHeightDir, "tile/", 1)
}

// tileHeightDir starts tlog's path of a tile of height TileHeight.
var tileHeightDir = fmt.Sprintf("tile/%d/", TileHeight)

// IsTileKey reports whether key is a tile of a chain's tree (TileKey).
func IsTileKey(key string) bool {
	_, _, err := ParseTileKey(key)
	return err == nil
}

// ParseTileKey is the inverse of TileKey: it returns the chain id and the
// tile of a tile key. Any other key, among them one of a tile of another
// height or a data tile, gives an error wrapping ErrNotTileKey.
func ParseTileKey(key string) (chainID string, t tlog.Tile, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotTileKey, key, why) }
	rest, ok := strings.CutPrefix(key, TilesPrefix)
	if !ok {
		return "", tlog.Tile{}, bad(`want "tiles/<chain>/tile/<L>/<N>[.p/<W>]"`)
	}
	chainID, path, ok := strings.Cut(rest, "/")
	if !ok || !ValidChainID(chainID) {
		return "", tlog.Tile{}, bad("invalid chain id " + strconv.Quote(chainID))
	}
	rest, ok = strings.CutPrefix(path, "tile/")
	if !ok || strings.HasPrefix(rest, "data/") {
		return "", tlog.Tile{}, bad("not a hash tile")
	}
	t, perr := tlog.ParseTilePath(tileHeightDir + rest)
	if perr != nil {
		return "", tlog.Tile{}, bad(perr.Error())
	}
	if t.H != TileHeight || t.L < 0 {
		return "", tlog.Tile{}, bad(fmt.Sprintf("not a hash tile of height %d", TileHeight))
	}
	return chainID, t, nil
}

// Suffixes appended to a checkpoint's key for the objects stored beside
// it: a name ending in one of them is not a checkpoint (IsCheckpointKey).
const (
	cosignatureExt = ".cosig."
	timestampExt   = ".tsr"
)

// ValidWitnessName reports whether name is usable as the last part of a
// cosignature key: the rules of ValidChainID (1 to 128 characters of
// [A-Za-z0-9._-], not starting with '.').
func ValidWitnessName(name string) bool { return ValidChainID(name) }

// CosignatureKey returns where the cosignature lines of witness
// witnessName for the checkpoint of chainID at size are stored: the
// checkpoint's key (CheckpointKey) followed by ".cosig.<witnessName>".
// witnessName must satisfy ValidWitnessName, or ParseCosignatureKey will
// not accept the key.
func CosignatureKey(chainID string, size int64, witnessName string) string {
	return CheckpointKey(chainID, size) + cosignatureExt + witnessName
}

// ParseCosignatureKey is the inverse of CosignatureKey: it returns the
// chain id, the size and the witness name of a cosignature key. Any other
// key gives an error wrapping ErrNotCosignatureKey.
func ParseCosignatureKey(key string) (chainID string, size int64, witnessName string, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrNotCosignatureKey, key, why) }
	// The witness name follows the first ".cosig." of the last segment:
	// the size's digits and ".checkpoint" hold none.
	seg := strings.LastIndexByte(key, '/') + 1
	i := strings.Index(key[seg:], cosignatureExt)
	if i < 0 {
		return "", 0, "", bad(`want "checkpoints/<chain>/<size>.checkpoint.cosig.<witness>"`)
	}
	i += seg
	witnessName = key[i+len(cosignatureExt):]
	if !ValidWitnessName(witnessName) {
		return "", 0, "", bad("invalid witness name " + strconv.Quote(witnessName))
	}
	chainID, size, err = ParseCheckpointKey(key[:i])
	if err != nil {
		return "", 0, "", fmt.Errorf("%w %q: %w", ErrNotCosignatureKey, key, err)
	}
	return chainID, size, witnessName, nil
}

// IsCosignatureKey reports whether a listed name is a stored cosignature's:
// a name under CheckpointsPrefix holding ".checkpoint.cosig.".
// ParseCosignatureKey says whether it is also a name CosignatureKey makes.
func IsCosignatureKey(name string) bool {
	return strings.HasPrefix(name, CheckpointsPrefix) && strings.Contains(name, checkpointExt+cosignatureExt)
}

// TimestampKey returns where the RFC 3161 timestamp token of the
// checkpoint of chainID at size is stored: the checkpoint's key
// (CheckpointKey) followed by ".tsr".
func TimestampKey(chainID string, size int64) string {
	return CheckpointKey(chainID, size) + timestampExt
}

// ParseTimestampKey is the inverse of TimestampKey: it returns the chain
// id and the size of a timestamp key. Any other key gives an error
// wrapping ErrNotTimestampKey.
func ParseTimestampKey(key string) (chainID string, size int64, err error) {
	base, ok := strings.CutSuffix(key, timestampExt)
	if !ok {
		return "", 0, fmt.Errorf("%w %q: want \"checkpoints/<chain>/<size>.checkpoint.tsr\"", ErrNotTimestampKey, key)
	}
	chainID, size, err = ParseCheckpointKey(base)
	if err != nil {
		return "", 0, fmt.Errorf("%w %q: %w", ErrNotTimestampKey, key, err)
	}
	return chainID, size, nil
}

// IsTimestampKey reports whether a listed name is a stored timestamp
// token's: a name under CheckpointsPrefix ending in ".checkpoint.tsr".
// ParseTimestampKey says whether it is also a name TimestampKey makes.
func IsTimestampKey(name string) bool {
	return strings.HasPrefix(name, CheckpointsPrefix) && strings.HasSuffix(name, checkpointExt+timestampExt)
}
