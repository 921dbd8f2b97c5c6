package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name RedisSentinel's sentinels monitor.
const SentinelMaster = "ebb"

// SentinelSet is a primary, one replica and three redis-sentinel
// processes watching them with a quorum of two, as the Sentinel
// documentation's smallest sound deployment has.
type SentinelSet struct {
	Primary, Replica *RedisServer
	Sentinels        []string // their addresses
	cmds             []*exec.Cmd
}

// RedisSentinel starts the set on free loopback ports; it is stopped when
// the test ends. Sentinels judge a server down after one second.
func RedisSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	RequireBinary(t, "redis-sentinel")
	s := &SentinelSet{Primary: Redis(t)}
	s.Replica = &RedisServer{
		Addr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Dir:   t.TempDir(),
		extra: []string{"--replicaof", "127.0.0.1", port(s.Primary.Addr)},
	}
	s.Replica.start(t)
	t.Cleanup(s.Replica.Kill)
	s.waitReplicating(t)

	for range 3 {
		dir := t.TempDir()
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		conf := filepath.Join(dir, "sentinel.conf") // sentinel rewrites it: its own copy
		body := strings.Join([]string{
			"bind 127.0.0.1", "port " + port(addr), "daemonize no", "dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2", SentinelMaster, port(s.Primary.Addr)),
			"sentinel down-after-milliseconds " + SentinelMaster + " 1000",
			"sentinel failover-timeout " + SentinelMaster + " 5000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("sentinel config: %v", err)
		}
		cmd := exec.Command("redis-sentinel", conf)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-sentinel: %v", err)
		}
		s.cmds = append(s.cmds, cmd)
		s.Sentinels = append(s.Sentinels, addr)
	}
	t.Cleanup(func() {
		for _, c := range s.cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	// Every sentinel must know the replica and the other sentinels before a
	// failover can be authorised.
	s.poll(t, 20*time.Second, "sentinels to see the replica and each other", func(c *goredis.SentinelClient) bool {
		reps, err1 := c.Replicas(context.Background(), SentinelMaster).Result()
		sens, err2 := c.Sentinels(context.Background(), SentinelMaster).Result()
		return err1 == nil && err2 == nil && len(reps) == 1 && len(sens) == 2
	})
	return s
}

// URL is the redis-sentinel:// URL ebb connects with.
func (s *SentinelSet) URL() string {
	return "redis-sentinel://" + strings.Join(s.Sentinels, ",") + "/" + SentinelMaster + "/0"
}

// PrimaryAddr asks the first sentinel where the primary is now.
func (s *SentinelSet) PrimaryAddr(t testing.TB) string {
	t.Helper()
	c := goredis.NewSentinelClient(&goredis.Options{Addr: s.Sentinels[0]})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
	if err != nil || len(hp) != 2 {
		t.Fatalf("sentinel get-master-addr-by-name: %v %v", hp, err)
	}
	return hp[0] + ":" + hp[1]
}

// KillPrimary kills the primary, as a crash would, and returns once every
// sentinel names the replica as the new primary.
func (s *SentinelSet) KillPrimary(t testing.TB) {
	t.Helper()
	old := s.Primary.Addr
	s.Primary.Kill()
	s.poll(t, 30*time.Second, "sentinels to promote the replica", func(c *goredis.SentinelClient) bool {
		hp, err := c.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		return err == nil && len(hp) == 2 && hp[0]+":"+hp[1] != old
	})
}

func (s *SentinelSet) poll(t testing.TB, limit time.Duration, what string, ok func(*goredis.SentinelClient) bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, addr := range s.Sentinels {
		c := goredis.NewSentinelClient(&goredis.Options{Addr: addr, MaxRetries: -1})
		for !ok(c) {
			if time.Now().After(deadline) {
				_ = c.Close()
				t.Fatalf("waited %s for %s", limit, what)
			}
			time.Sleep(50 * time.Millisecond) // polling real sentinels, not timing a test
		}
		_ = c.Close()
	}
}

func (s *SentinelSet) waitReplicating(t testing.TB) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Replica.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not sync with %s: %s %v", s.Replica.Addr, s.Primary.Addr, info, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a real replica's sync, not timing a test
	}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
