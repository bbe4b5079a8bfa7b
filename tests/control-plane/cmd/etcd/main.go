// Command etcd is etcd's own server entry point, built from go.etcd.io/etcd/server/v3 at the
// version kube-apiserver is tested with (etcd's repository keeps its main package in a module
// of its own with many more dependencies).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
