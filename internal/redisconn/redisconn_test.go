package redisconn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr string
		check   func(t *testing.T, tg Target)
	}{
		{name: "plain", url: "redis://127.0.0.1:6379/2", check: func(t *testing.T, tg Target) {
			assert.Equal(t, "127.0.0.1:6379", tg.Addr())
			assert.Equal(t, 2, tg.plain.DB)
			assert.Zero(t, tg.WaitReplicas)
		}},
		{name: "plain with password and wait", url: "redis://:pw@h:1/0?wait_replicas=1&wait_timeout=250ms", check: func(t *testing.T, tg Target) {
			assert.Equal(t, "pw", tg.plain.Password)
			assert.Equal(t, 1, tg.WaitReplicas)
			assert.Equal(t, 250*time.Millisecond, tg.WaitTimeout)
		}},
		{name: "plain keeps go-redis parameters", url: "redis://h:1/0?dial_timeout=3s&wait_replicas=2", check: func(t *testing.T, tg Target) {
			assert.Equal(t, 3*time.Second, tg.plain.DialTimeout)
			assert.Equal(t, 2, tg.WaitReplicas)
		}},
		{name: "sentinel", url: "redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/ebb/3?sentinel_password=sp", check: func(t *testing.T, tg Target) {
			assert.Equal(t, []string{"10.0.0.1:26379", "10.0.0.2:26379"}, tg.failover.SentinelAddrs)
			assert.Equal(t, "ebb", tg.failover.MasterName)
			assert.Equal(t, 3, tg.failover.DB)
			assert.Equal(t, "pw", tg.failover.Password)
			assert.Equal(t, "sp", tg.failover.SentinelPassword)
			assert.Equal(t, DefaultWaitTimeout, tg.WaitTimeout)
			assert.Contains(t, tg.Addr(), "master ebb via sentinels 10.0.0.1:26379,10.0.0.2:26379")
		}},
		{name: "placeholder password", url: "redis://:CHANGE-ME@h:1/0", wantErr: "placeholder CHANGE-ME"},
		{name: "placeholder password via sentinel", url: "redis-sentinel://:CHANGE-ME@h:1/ebb", wantErr: "placeholder CHANGE-ME"},
		{name: "foreign scheme", url: "postgres://h:1/0", wantErr: `scheme "postgres"`},
		{name: "no scheme", url: "h:1", wantErr: "scheme"},
		{name: "unparseable hides password", url: "redis://:hunter2@[::1", wantErr: "redis url"},
		{name: "sentinel without master", url: "redis-sentinel://h:26379", wantErr: "want /master"},
		{name: "sentinel with extra path", url: "redis-sentinel://h:26379/m/0/x", wantErr: "want /master"},
		{name: "sentinel bad db", url: "redis-sentinel://h:26379/m/zero", wantErr: `database "zero"`},
		{name: "sentinel without port", url: "redis-sentinel://h/m", wantErr: "want host:port"},
		{name: "sentinel empty address", url: "redis-sentinel://h:1,/m", wantErr: "redis url"},
		{name: "sentinel empty host", url: "redis-sentinel://:2,h:1/m", wantErr: "want host:port"},
		{name: "sentinel unknown parameter", url: "redis-sentinel://h:1/m?master_name=x", wantErr: `unknown parameter "master_name"`},
		{name: "wait not a number", url: "redis://h:1/0?wait_replicas=all", wantErr: "wait_replicas"},
		{name: "wait negative", url: "redis://h:1/0?wait_replicas=-1", wantErr: "wait_replicas"},
		{name: "wait huge", url: "redis://h:1/0?wait_replicas=99999", wantErr: "wait_replicas"},
		{name: "wait timeout zero", url: "redis://h:1/0?wait_timeout=0s", wantErr: "wait_timeout"},
		{name: "wait timeout too long", url: "redis://h:1/0?wait_timeout=2h", wantErr: "wait_timeout"},
		{name: "go-redis refuses unknown parameter", url: "redis://h:1/0?nonsense=1", wantErr: "nonsense"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Parse(tt.url)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "hunter2", "an error must not repeat the password")
				return
			}
			require.NoError(t, err)
			tt.check(t, tg)
			c := tg.NewClient(1)
			assert.Equal(t, 1, c.Options().PoolSize)
			assert.Zero(t, c.Options().MaxRetries, "go-redis stores retries off (-1) as 0")
			require.NoError(t, c.Close())
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"redis://h:1/0", "redis-sentinel://:p@a:1,b:2/m/1?sentinel_password=x&wait_replicas=1", "unix:///tmp/r.sock", "redis://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		require.NotEmpty(t, tg.Addr())
	})
}
