package store_test

import (
	"testing"

	"github.com/diskd/diskd/service/store"
	"github.com/diskd/diskd/service/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return store.NewMemory(opts)
	})
}
