//go:build !unix

package mailproxy

// descriptorLimit returns 0: the limit of open descriptors is unknown.
func descriptorLimit() int { return 0 }
