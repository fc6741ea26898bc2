// The Go peer of the bench: net/http over HTTP/2 with encoding/json into
// map[string]any, as Keyfactor's Go client and kfutil do.  Standard library
// only.
//
//	peer seq   URL CA USER PASS N      N GETs one after another, each body decoded
//	peer multi URL CA USER PASS N C    N GETs, C goroutines at once, every answer kept
//
// Prints the elapsed seconds; exits 1 on any failure, non-200 or non-HTTP/2.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peer: "+format+"\n", args...)
	os.Exit(1)
}

func client(caFile string) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fail("%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("no certificate in %s", caFile)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:   true, // a custom TLS config turns it off otherwise
		MaxIdleConnsPerHost: 64,
	}}
}

func get(c *http.Client, url, user, pass string) (map[string]any, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-keyfactor-requested-with", "APIClient")
	req.Header.Set("x-keyfactor-api-version", "1")
	req.Header.Set("User-Agent", "bench-go/1")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		return nil, fmt.Errorf("HTTP %d over %s", resp.StatusCode, resp.Proto)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func main() {
	if len(os.Args) < 7 {
		fail("usage: peer seq|multi URL CA USER PASS N [C]")
	}
	mode, url, user, pass := os.Args[1], os.Args[2], os.Args[4], os.Args[5]
	n, err := strconv.Atoi(os.Args[6])
	if err != nil {
		fail("N: %v", err)
	}
	c := client(os.Args[3])
	t0 := time.Now()
	switch mode {
	case "seq":
		for i := 0; i < n; i++ {
			if _, err := get(c, url, user, pass); err != nil {
				fail("%v", err)
			}
		}
	case "multi":
		if len(os.Args) < 8 {
			fail("multi needs C")
		}
		conc, err := strconv.Atoi(os.Args[7])
		if err != nil || conc < 1 {
			fail("C: %v", err)
		}
		values := make([]map[string]any, n)
		errs := make([]error, n)
		next := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					values[i], errs[i] = get(c, url, user, pass)
				}
			}()
		}
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		for i, err := range errs {
			if err != nil || values[i] == nil {
				fail("call %d: %v", i, err)
			}
		}
	default:
		fail("unknown mode %s", mode)
	}
	fmt.Printf("%.6f\n", time.Since(t0).Seconds())
}
