package switchyard_test

import "sync"

// load runs work in n goroutines, each calling it again and again (with its
// own count of calls so far), until the returned stop is called; stop waits
// for them to finish.
func load(n int, work func(call int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := 0; ; call++ {
				select {
				case <-done:
					return
				default:
				}
				work(call)
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
