package wire

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxKeyFile bounds how much of a key file is read.
const maxKeyFile = 1 << 20

// Keyring holds the AES-256-GCM keys that seal and open datagrams. The first
// key seals; every key is tried to open. A Keyring is immutable and safe for
// concurrent use.
type Keyring struct {
	aeads []cipher.AEAD
}

// NewKeyring returns a keyring of the given 32-byte keys, the first of which
// seals. The keys are not retained.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("wire: keyring needs at least one key")
	}
	k := &Keyring{aeads: make([]cipher.AEAD, 0, len(keys))}
	for i, key := range keys {
		a, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("wire: key %d: %w", i, err)
		}
		k.aeads = append(k.aeads, a)
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Len returns the number of keys.
func (k *Keyring) Len() int { return len(k.aeads) }

// LoadKeyring reads a key file: one key a line, the standard base64 encoding
// of exactly 32 bytes; empty lines and lines starting with # are ignored;
// there must be at least one key. The file must not be accessible to group or
// others. Errors name the file and the line but never show key material.
func LoadKeyring(path string) (*Keyring, error) {
	keys, err := ReadKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := NewKeyring(keys...)
	for _, key := range keys {
		clear(key)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ReadKeyFile reads a key file under the rules of LoadKeyring and returns
// its keys in order (the first seals), for another user of the same keys
// (the gossip transport). The caller should clear them when done.
func ReadKeyFile(path string) ([][]byte, error) {
	// Refuse a FIFO or device before opening it: opening a FIFO blocks.
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		what := "read or write"
		switch {
		case perm&0o044 != 0 && perm&0o022 == 0:
			what = "read"
		case perm&0o044 == 0 && perm&0o022 != 0:
			what = "write"
		case perm&0o066 == 0:
			what = "execute"
		}
		return nil, fmt.Errorf("key file %s: mode %04o lets group or others %s it; run chmod 600 %s", path, perm, what, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("key file %s: larger than %d bytes", path, maxKeyFile)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxKeyFile+1)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := base64.StdEncoding.Decode(key, text)
		if err != nil {
			// base64.CorruptInputError only gives an offset, never content.
			return nil, fmt.Errorf("key file %s line %d: not standard base64: %w", path, line, err)
		}
		if n != KeySize {
			return nil, fmt.Errorf("key file %s line %d: key is %d bytes, want %d (head -c 32 /dev/urandom | base64)", path, line, n, KeySize)
		}
		keys = append(keys, key[:n])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key file %s: no keys", path)
	}
	return keys, nil
}

// seal appends to dst the nonce and the sealed body, with header as
// additional authenticated data.
func (k *Keyring) seal(dst []byte, header *[HeaderSize]byte, body []byte) []byte {
	var nonce [NonceSize]byte
	rand.Read(nonce[:]) // never returns an error; crashes the program if randomness fails
	dst = append(dst, nonce[:]...)
	return k.aeads[0].Seal(dst, nonce[:], body, header[:])
}

// open returns the plaintext of a sealed body (nonce || ciphertext || tag),
// trying every key, or false if no key opens it.
func (k *Keyring) open(header []byte, sealed []byte) ([]byte, bool) {
	nonce, ct := sealed[:NonceSize], sealed[NonceSize:]
	buf := make([]byte, 0, len(ct)-TagSize)
	for _, a := range k.aeads {
		if plain, err := a.Open(buf, nonce, ct, header); err == nil {
			return plain, true
		}
	}
	return nil, false
}
