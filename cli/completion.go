package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// Shell completion scripts: they ask the binary itself for candidates
// (urfave/cli's --generate-bash-completion), so they stay right as commands
// are added.
const bashCompletion = `# bash completion for populi-db: source <(populi-db completion bash)
_populi_db_complete() {
  local cur words cword opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:$COMP_CWORD}")
  if [[ "$cur" == "-"* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _populi_db_complete populi-db ./populi-db
`

const zshCompletion = `#compdef populi-db
# zsh completion for populi-db: source <(populi-db completion zsh)
_populi_db() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _populi_db populi-db
`

func completionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash:  source <(populi-db completion bash)\n" +
			"zsh:   source <(populi-db completion zsh)\n" +
			"fish:  populi-db completion fish > ~/.config/fish/completions/populi-db.fish",
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usagef("name one shell: populi-db completion bash|zsh|fish")
			}
			var script string
			switch shell := strings.ToLower(c.Args().First()); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				script = s
			default:
				return usagef("unknown shell %q: use bash, zsh or fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
