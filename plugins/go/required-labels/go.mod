module kitsync.example/plugins/go/required-labels

go 1.26
