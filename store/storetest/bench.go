package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ebbrun/ebb/store"
)

const (
	benchKeys      = 1000
	benchListKeys  = 10_000
	benchValueSize = 256 // about a small JSON record
)

// Bench runs the store benchmarks, each on a fresh store from open (which
// closes it at cleanup): Get, List of 10,000 keys and single-put Txn, each
// sequential and with RunParallel.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	value := make([]byte, benchValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()

	getKeys := make([]string, benchKeys)
	for i := range getKeys {
		getKeys[i] = fmt.Sprintf("bench/get/%06d", i)
	}
	b.Run("Get", func(b *testing.B) {
		s := open(b)
		fill(b, s, getKeys, value)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(ctx, getKeys[i%benchKeys]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get/parallel", func(b *testing.B) {
		s := open(b)
		fill(b, s, getKeys, value)
		b.ReportAllocs()
		b.ResetTimer()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				if _, err := s.Get(ctx, getKeys[i%benchKeys]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})

	listKeys := make([]string, benchListKeys)
	for i := range listKeys {
		listKeys[i] = fmt.Sprintf("bench/list/%06d", i)
	}
	list := func(b *testing.B, s store.Store) {
		kvs, _, err := s.List(ctx, "bench/list/")
		if err != nil {
			b.Fatal(err)
		}
		if len(kvs) != benchListKeys {
			b.Fatalf("listed %d keys, want %d", len(kvs), benchListKeys)
		}
	}
	b.Run("List10k", func(b *testing.B) {
		s := open(b)
		fill(b, s, listKeys, value)
		fill(b, s, getKeys, value) // keys outside the prefix
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			list(b, s)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchListKeys, "ns/key")
	})
	b.Run("List10k/parallel", func(b *testing.B) {
		s := open(b)
		fill(b, s, listKeys, value)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				list(b, s)
			}
		})
	})

	b.Run("Txn", func(b *testing.B) {
		s := open(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := s.Txn(ctx, store.Put(getKeys[i%benchKeys], value, store.AnyVersion)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Txn/parallel", func(b *testing.B) {
		s := open(b)
		b.ReportAllocs()
		b.SetParallelism(8) // writers wait on fsync or the network, not the CPU
		b.ResetTimer()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(n.Add(1))
				if _, err := s.Txn(ctx, store.Put(getKeys[i%benchKeys], value, store.AnyVersion)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("TxnCAS", func(b *testing.B) {
		s := open(b)
		rev, err := s.Txn(ctx, store.Put("bench/cas", value, store.MustNotExist))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if rev, err = s.Txn(ctx, store.Check("bench/get/000000", store.MustNotExist), store.Put("bench/cas", value, rev)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fill writes keys in transactions of a few hundred ops.
func fill(b *testing.B, s store.Store, keys []string, value []byte) {
	b.Helper()
	const per = 500
	for i := 0; i < len(keys); i += per {
		ops := make([]store.Op, 0, per)
		for _, k := range keys[i:min(i+per, len(keys))] {
			ops = append(ops, store.Put(k, value, store.AnyVersion))
		}
		if _, err := s.Txn(context.Background(), ops...); err != nil {
			b.Fatal(err)
		}
	}
}
